"""Choosing the metadata backend: ``open_store(url)``, ``register_backend``, ``Store(db_url=)`` and ``FLOWKIT_DB``."""

from __future__ import annotations

import pickle

import pytest

import flowkit as fk
from conftest import linear
from flowkit import store
from flowkit.store import Store, open_store, register_backend
from flowkit.store.sqlite import SQLiteMetadataStore


def test_a_plain_folder_or_a_sqlite_url_opens_sqlite(tmp_path):
    by_folder = open_store(tmp_path)
    assert isinstance(by_folder, SQLiteMetadataStore) and by_folder.path == tmp_path / "flowkit.db"
    by_url = open_store(f"sqlite:///{str(tmp_path / 'other.db').lstrip('/')}")
    assert by_url.path == tmp_path / "other.db" and (tmp_path / "other.db").exists()
    assert pickle.loads(pickle.dumps(by_url)).path == by_url.path


def test_an_unknown_scheme_names_itself_and_the_known_ones():
    with pytest.raises(fk.StoreError, match=r"scheme 'mongodb'.*known schemes are: .*sqlite://"):
        open_store("mongodb://db.example/flowkit")
    with pytest.raises(fk.StoreError, match="names a file"):
        open_store("sqlite://host/flowkit.db")


def test_a_postgresql_url_without_its_driver_says_which_extra_to_install(monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "flowkit.store.postgres", raising=False)
    monkeypatch.setitem(sys.modules, "psycopg", None)  # not installed
    monkeypatch.setattr("flowkit.store._BACKENDS", {k: v for k, v in store._BACKENDS.items()
                                                     if not k.startswith("postgres")})
    with pytest.raises(fk.StoreError, match=r"postgresql://.*flowkit\[postgres\]"):
        open_store("postgresql://user@db.example/flowkit")
    with pytest.raises(fk.StoreError, match="names a file"):
        open_store("sqlite://host/flowkit.db")


def test_a_registered_backend_opens_its_scheme(tmp_path, monkeypatch):
    from flowkit.store import _BACKENDS

    monkeypatch.setattr("flowkit.store._BACKENDS", dict(_BACKENDS))
    opened = []

    def factory(url: str) -> SQLiteMetadataStore:  # a stand-in backend: SQLite at a path the URL names
        opened.append(url)
        return SQLiteMetadataStore(tmp_path / url.split("://", 1)[1])

    register_backend("contract", factory)
    db = open_store("contract://elsewhere.db")
    assert opened == ["contract://elsewhere.db"] and db.path == tmp_path / "elsewhere.db"
    with pytest.raises(ValueError, match="URL scheme"):
        register_backend("contract://", factory)


def test_the_store_takes_its_metadata_url_from_an_argument_or_flowkit_db(tmp_path, monkeypatch):
    url = "sqlite:///" + str(tmp_path / "meta" / "shared.db").lstrip("/")
    store = Store(tmp_path / "home", db_url=url)
    assert store.db.path == tmp_path / "meta" / "shared.db"
    assert pickle.loads(pickle.dumps(store)).db.url == store.db.url
    monkeypatch.setenv("FLOWKIT_DB", url)
    monkeypatch.setenv("FLOWKIT_HOME", str(tmp_path / "home2"))
    run = linear.run(1)
    assert Store.open().db.url == url and [r.id for r in Store(tmp_path / "home3").runs()] == [run.id]
    monkeypatch.setenv("FLOWKIT_DB", "nosuch://x")
    with pytest.raises(fk.StoreError, match="nosuch"):
        Store(tmp_path / "home4")
