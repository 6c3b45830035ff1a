"""Named migration lists: each feature owns the schema of its own tables.

A feature (the core records, the model registry, metrics...) registers its
ordered list of steps under a name, once per SQL dialect::

    from flowkit.store.migrations import register_migrations

    register_migrations("registry", [
        "CREATE TABLE models (name TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (name, version))",
        "ALTER TABLE models ADD COLUMN alias TEXT",
    ])

Step ``i`` upgrades that feature's schema from version ``i`` to ``i + 1``; a
store records, per name, how many steps it has applied and applies the rest
when it is opened (or when :meth:`~flowkit.store.protocols.MetadataStore.migrate`
is called, for a list registered after the store was opened). Steps are only
ever appended: an applied step never runs again, so editing one would leave
existing stores behind. A step is SQL text (statements separated by ``;``) or a
callable that receives the backend's connection inside the migration's
transaction, for changes that need code.

The ``"core"`` list (runs, task runs, artifacts, cache, schedules...) is one of
them; :mod:`flowkit.store.sqlite_schema` registers its SQLite spelling.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["CORE", "Step", "migrations", "register_migrations", "registered_names"]

#: The name of the core schema's list.
CORE = "core"

Step = str | Callable[[Any], None]

_LISTS: dict[tuple[str, str], tuple[Step, ...]] = {}
_LOCK = threading.Lock()


def register_migrations(name: str, steps: Sequence[Step], *, dialect: str = "sqlite") -> None:
    """Register (or extend) the migration list of a feature for one SQL dialect.

    Registering again with the same name and dialect must repeat the steps
    registered before and may append new ones: a list is never rewritten.

    Raises:
        ValueError: the name is empty, or the new list does not start with the registered one.
    """
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"migration list name {name!r} must be letters, digits and underscores")
    new = tuple(steps)
    with _LOCK:
        old = _LISTS.get((dialect, name), ())
        if new[: len(old)] != old:
            raise ValueError(f"the {dialect} migrations of {name!r} would rewrite applied steps; only append new "
                             f"steps at the end")
        _LISTS[(dialect, name)] = new


def migrations(name: str, dialect: str = "sqlite") -> tuple[Step, ...]:
    """The steps registered under ``name`` for ``dialect`` (empty if none).

    A list registered for SQLite serves every dialect that has none of its own:
    steps are written in SQLite's spelling, and the PostgreSQL backend translates
    them (:mod:`flowkit.store.postgres_sql`); a callable step gets that backend's
    connection, whose ``dialect`` attribute says which it is.
    """
    return _LISTS.get((dialect, name)) or _LISTS.get(("sqlite", name), ())


def registered_names(dialect: str = "sqlite") -> list[str]:
    """The names with steps for ``dialect`` (or for SQLite): ``"core"`` first, then the others by name."""
    names = sorted({n for d, n in _LISTS if d in (dialect, "sqlite") and n != CORE})
    return ([CORE] if migrations(CORE, dialect) else []) + names
