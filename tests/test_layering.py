"""The layering of the package, read from the source with ``ast``.

Nothing under ``flowkit/store/`` imports the engine (its state or its driver),
tracing, flow, runner or worker modules, at any level; the definition modules
import no runtime module at their top level (an import inside a function, or
under ``TYPE_CHECKING``, does not load anything when the definitions are imported).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import flowkit

PACKAGE = Path(flowkit.__file__).parent

STORE_MUST_NOT_IMPORT = ("flowkit.engine", "flowkit.tracing", "flowkit.flow", "flowkit.runner", "flowkit._worker")
DEFINITIONS = ("task", "flow", "graph", "tracing", "files", "secrets", "ml/model")
RUNTIME = ("flowkit.engine", "flowkit.runner", "flowkit.executors", "flowkit.store", "flowkit._worker",
           "flowkit.recording")
# The engine's driver (flowkit/driver.py, the Loop beside the state) follows the engine's rules.
STORE_MUST_NOT_IMPORT += ("flowkit.driver",)
RUNTIME += ("flowkit.driver",)


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """The modules one import statement names, relative imports resolved."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".")
            base = base[: len(base) - node.level + (1 if is_package else 0)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        yield prefix
        yield from (f"{prefix}.{alias.name}" for alias in node.names)  # `from flowkit import engine`


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements run when the module is imported: not in functions, nor under ``TYPE_CHECKING``."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from _top_level(node.orelse)
            continue
        yield node
        for block in ("body", "orelse", "finalbody"):  # classes, if, try, with, loops
            yield from _top_level(getattr(node, block, []))
        for handler in getattr(node, "handlers", []):
            yield from _top_level(handler.body)


def imports(path: Path, *, top_level_only: bool, root: Path = PACKAGE) -> set[str]:
    """Every module an import statement of ``path`` names (``root`` is the package folder)."""
    tree = ast.parse(path.read_text(), str(path))
    module, is_package = _module_name(path, root), path.name == "__init__.py"
    nodes = _top_level(tree.body) if top_level_only else ast.walk(tree)
    return {name for node in nodes for name in _imported(node, module, is_package)}


def _names(found: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(name for name in found if any(name == f or name.startswith(f + ".") for f in forbidden))


def test_the_import_reader_sees_lazy_relative_and_type_checking_imports(tmp_path):
    (tmp_path / "flowkit" / "sub").mkdir(parents=True)
    source = tmp_path / "flowkit" / "sub" / "mod.py"
    source.write_text("from typing import TYPE_CHECKING\nfrom .. import engine\nif TYPE_CHECKING:\n"
                      "    from flowkit.store import Store\ndef f():\n    import flowkit.runner\n")
    root = tmp_path / "flowkit"
    assert _names(imports(source, top_level_only=True, root=root), RUNTIME) == ["flowkit.engine"]
    assert _names(imports(source, top_level_only=False, root=root), RUNTIME) == [
        "flowkit.engine", "flowkit.runner", "flowkit.store", "flowkit.store.Store"]


@pytest.mark.parametrize("path", sorted((PACKAGE / "store").rglob("*.py")), ids=lambda p: p.name)
def test_the_store_imports_nothing_of_the_engine_tracing_flows_or_workers(path):
    assert _names(imports(path, top_level_only=False), STORE_MUST_NOT_IMPORT) == []


@pytest.mark.parametrize("name", DEFINITIONS)
def test_definition_modules_import_no_runtime_module_at_top_level(name):
    assert _names(imports(PACKAGE / f"{name}.py", top_level_only=True), RUNTIME) == []
