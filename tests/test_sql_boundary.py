"""All SQL lives under ``flowkit/store/``: a string literal elsewhere that reads as SQL fails this test.

A PostgreSQL backend then only reimplements the metadata store protocol; no
module outside the store needs to know a table's columns or their order.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import flowkit

PACKAGE = Path(flowkit.__file__).parent
SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE\s+FROM|CREATE\s+(TABLE|INDEX))\b")


def sql_literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of each string literal in ``source`` (f-string parts included) that contains SQL."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
            found.append((node.lineno, node.value.strip()[:80]))
    return sorted(found)


def test_the_detector_finds_sql_in_plain_and_formatted_strings():
    source = ('a = "SELECT id FROM runs"\nb = f"UPDATE runs SET x = {1}"\nc = "delete from is lower case prose"\n'
              'd = ("INSERT INTO t "\n     "VALUES (?)")\n')
    assert [line for line, _ in sql_literals(source)] == [1, 2, 4]


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.rglob("*.py") if "store" not in p.relative_to(PACKAGE).parts),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_outside_the_store_writes_sql(path):
    assert sql_literals(path.read_text()) == [], f"{path.relative_to(PACKAGE.parent)} has SQL; move it into flowkit/store/"
