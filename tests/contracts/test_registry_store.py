"""The contract every metadata backend keeps for the model registry: versions unique and gapless across
processes, idempotent per cache key, alias moves appended to a history that never changes, ``as_of``
answered from that history, one transaction per change. Real stores, real processes, explicit times."""

from __future__ import annotations

import pytest

from backends import metadata_backend, metadata_url, run_processes  # noqa: F401 - fixtures
from flowkit.store import open_store
from flowkit.store.migrations import migrations
from flowkit.store.protocols import ArtifactRow
from flowkit.store.registry import ANY, ModelVersionRecord


def version(name: str = "churn", artifact_id: str = "a1", created: float = 100.0, cache_key: str | None = None,
            run_id: str | None = None) -> ModelVersionRecord:
    return ModelVersionRecord(name, 0, artifact_id, run_id, f"{run_id}/train" if run_id else None, cache_key,
                              {"auc": 0.9}, {"C": 1.0}, {"team": "growth"}, {"inputs": [{"name": "x", "dtype": "int64"}]},
                              {"python": "3.12.1"}, created, "ada")


def test_the_registry_tables_are_migrated_when_the_store_opens(metadata_url):
    db = open_store(metadata_url)
    assert db.schema_version("registry") == len(migrations("registry", db.dialect)) > 0


def test_versions_round_trip_and_count_up_per_name(metadata_url):
    db = open_store(metadata_url)
    first, new = db.add_model_version(version(), aliases=["staging"])
    assert new and first.version == 1 and first.aliases == ("staging",)
    assert first.metrics == {"auc": 0.9} and first.params == {"C": 1.0} and first.tags == {"team": "growth"}
    assert first.signature == {"inputs": [{"name": "x", "dtype": "int64"}]} and first.user == "ada"
    second, _ = db.add_model_version(version(artifact_id="a2", created=200.0))
    other, _ = db.add_model_version(version(name="fraud"))
    assert (second.version, other.version) == (2, 1)
    assert [v.version for v in db.model_versions("churn")] == [1, 2]
    assert db.find_model_version("churn") == second
    assert db.find_model_version("churn", version=1) == first
    assert db.find_model_version("churn", alias="staging") == first
    assert db.find_model_version("churn", version=9) is None and db.find_model_version("nope") is None
    assert [(m.name, m.versions, m.latest, m.created, m.updated) for m in db.models()] == [
        ("churn", 2, 2, 100.0, 200.0), ("fraud", 1, 1, 100.0, 100.0)]


def test_a_version_registered_again_with_its_cache_key_is_returned_not_duplicated(metadata_url):
    db = open_store(metadata_url)
    first, new = db.add_model_version(version(cache_key="k1", run_id="r1"))
    again, again_new = db.add_model_version(version(artifact_id="other", cache_key="k1", run_id="r2"))
    assert new and not again_new and again == first
    assert db.model_version_for_key("churn", "k1") == first and db.model_version_for_key("churn", "k2") is None
    assert len(db.model_versions("churn")) == 1


def test_the_artifact_of_a_version_is_recorded_with_it(metadata_url):
    db = open_store(metadata_url)
    row = ArtifactRow("a1", None, "pickle", "m.Model", 3, None, None, None, 100.0, b"abc")
    db.add_model_version(version(run_id="r1"), artifact=row)
    assert db.artifact("a1").type == "m.Model" and db.inline_data("a1") == b"abc"
    assert db.registered_producers(["a1", "zz"]) == {"a1": "r1/train"}
    assert "a1" in db.referenced_artifacts(since=10**12)  # gc keeps registered models


_REGISTER = """
from flowkit.store import open_store
from flowkit.store.registry import ModelVersionRecord
db = open_store(sys.argv[1])
key = sys.argv[2] if sys.argv[2] != "-" else None
got = []
for i in range(int(sys.argv[3])):
    record = ModelVersionRecord("churn", 0, f"a{i}", None, None, key, {}, {}, {}, None, {}, 100.0 + i, "p")
    got.append(db.add_model_version(record)[0].version)
print(" ".join(map(str, got)))
"""


def test_versions_are_unique_and_gapless_under_concurrent_processes(metadata_url, tmp_path):
    open_store(metadata_url)
    outs = run_processes(tmp_path, _REGISTER, [[metadata_url, "-", "10"] for _ in range(4)])
    got = [int(v) for out in outs for v in out.split()]
    assert sorted(got) == list(range(1, 41))
    assert [v.version for v in open_store(metadata_url).model_versions("churn")] == list(range(1, 41))


def test_one_cache_key_makes_one_version_under_concurrent_processes(metadata_url, tmp_path):
    open_store(metadata_url)
    outs = run_processes(tmp_path, _REGISTER, [[metadata_url, "same-key", "1"] for _ in range(4)])
    assert {out.strip() for out in outs} == {"1"}
    assert len(open_store(metadata_url).model_versions("churn")) == 1


def test_alias_moves_are_appended_to_a_history_that_never_changes(metadata_url):
    db = open_store(metadata_url)
    for i in range(3):
        db.add_model_version(version(artifact_id=f"a{i}"))
    first = db.move_alias("churn", "production", 1, when=10.0, user="ada", action="promote")
    before = db.alias_history("churn")
    db.move_alias("churn", "production", 2, when=20.0, user="bob", action="promote", reason="better", run_id="r9")
    db.move_alias("churn", "staging", 3, when=25.0, user="bob", action="set")
    db.move_alias("churn", "production", None, when=30.0, user="ada", action="delete")
    history = db.alias_history("churn")
    assert history[: len(before)] == before == [first]
    assert [(h.alias, h.version, h.previous, h.action) for h in history] == [
        ("production", 1, None, "promote"), ("production", 2, 1, "promote"), ("staging", 3, None, "set"),
        ("production", None, 2, "delete")]
    assert history[1].reason == "better" and history[1].run_id == "r9" and history[1].user == "bob"
    assert [h.seq for h in history] == sorted(h.seq for h in history)
    assert [h.alias for h in db.alias_history("churn", "staging")] == ["staging"]
    assert db.model_aliases("churn") == {"staging": 3}
    assert db.move_alias("churn", "production", None, when=40.0, user="ada", action="delete") is None
    assert len(db.alias_history("churn")) == 4


def test_the_alias_history_refuses_updates_and_deletes(metadata_url):
    db = open_store(metadata_url)
    db.add_model_version(version())
    db.move_alias("churn", "production", 1, when=10.0, user="ada", action="promote")
    for sql in ("UPDATE alias_history SET version = 7", "DELETE FROM alias_history"):
        with pytest.raises(Exception, match="append-only") as raised:  # the database's own error: a trigger
            db.write(lambda c, sql=sql: c.execute(sql))
        assert type(raised.value).__module__.split(".")[0] in ("sqlite3", "psycopg")
    assert [h.version for h in db.alias_history("churn")] == [1]


def test_a_move_expecting_another_holder_moves_nothing(metadata_url):
    db = open_store(metadata_url)
    for i in range(3):
        db.add_model_version(version(artifact_id=f"a{i}"))
    db.move_alias("churn", "production", 1, when=10.0, user="ada", action="promote")
    assert db.move_alias("churn", "production", 3, when=20.0, user="bob", action="rollback", expect=2) is None
    assert db.move_alias("churn", "staging", 3, when=20.0, user="bob", action="set", expect=1) is None
    moved = db.move_alias("churn", "production", 2, when=20.0, user="bob", action="promote", expect=1)
    assert moved is not None and moved.previous == 1
    assert db.move_alias("churn", "staging", 3, when=21.0, user="bob", action="set", expect=None) is not None
    assert db.move_alias("churn", "staging", 1, when=22.0, user="bob", action="set", expect=ANY).previous == 3


def test_as_of_is_answered_from_the_history(metadata_url):
    db = open_store(metadata_url)
    db.add_model_version(version(artifact_id="a1", created=5.0))
    db.add_model_version(version(artifact_id="a2", created=15.0))
    db.move_alias("churn", "production", 1, when=10.0, user="ada", action="promote")
    db.move_alias("churn", "production", 2, when=20.0, user="ada", action="promote")
    db.move_alias("churn", "production", None, when=30.0, user="ada", action="delete")
    at = {t: db.find_model_version("churn", alias="production", as_of=t) for t in (9.0, 10.0, 19.9, 20.0, 31.0)}
    assert {t: (v.version if v else None) for t, v in at.items()} == {9.0: None, 10.0: 1, 19.9: 1, 20.0: 2,
                                                                      31.0: None}
    assert db.find_model_version("churn", as_of=10.0).version == 1  # the latest registered by then
    assert db.find_model_version("churn", as_of=1.0) is None
    assert db.find_model_version("churn", version=2, as_of=10.0) is None
    assert db.find_model_version("churn", alias="production") is None  # deleted now
