"""The names the metadata database had before the store protocols: kept so existing imports work.

``MetadataDB`` is :class:`~flowkit.store.sqlite.SQLiteMetadataStore`; the records
and :class:`~flowkit.store.protocols.Batch` live in :mod:`flowkit.store.protocols`,
the core migrations in :mod:`flowkit.store.sqlite_schema`. New code imports from
those modules.
"""

from __future__ import annotations

from flowkit.store.protocols import Batch, CacheHit, InputRecord, LineageStep
from flowkit.store.sqlite import SQLiteMetadataStore
from flowkit.store.sqlite_schema import MIGRATIONS, SCHEMA_VERSION

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Batch", "CacheHit", "InputRecord", "LineageStep", "MetadataDB"]

MetadataDB = SQLiteMetadataStore
