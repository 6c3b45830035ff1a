"""The contract every artifact store keeps: bytes stored under their digest, written atomically,
checked when read (a damaged or missing value is detected, never returned), listed for gc."""

from __future__ import annotations

import io
import pickle

import fsspec
import pytest

from backends import artifact_store  # noqa: F401 - the fixture
from flowkit.hashing import digest
from flowkit.store.protocols import ArtifactStore, DamagedArtifact


def test_each_backend_implements_the_protocol(artifact_store):
    assert isinstance(artifact_store, ArtifactStore)


def test_bytes_round_trip_under_their_digest(artifact_store):
    data = b"some bytes" * 1000
    d = digest(data)
    assert not artifact_store.exists(d) and not artifact_store.verify(d)
    where = artifact_store.write(d, data)
    assert str(where) == str(artifact_store.path(d)) and d in str(where)
    assert bytes(artifact_store.read(d)) == data
    assert artifact_store.exists(d) and artifact_store.verify(d)
    artifact_store.write(d, data)  # again: nothing changes
    assert [x for x, _ in artifact_store.digests()] == [d]


def test_a_streamed_write_is_digested_on_the_way(artifact_store):
    value = {"rows": list(range(10_000))}
    d, size, where = artifact_store.write_stream(lambda f: pickle.dump(value, f, protocol=5))
    data = pickle.dumps(value, protocol=5)
    assert (d, size) == (digest(data), len(data)) and str(where) == str(artifact_store.path(d))
    assert pickle.loads(artifact_store.read(d)) == value


def test_damaged_bytes_are_detected_on_read(artifact_store):
    data = b"the real bytes" * 100
    d = digest(data)
    artifact_store.write(d, data)
    with fsspec.open(str(artifact_store.path(d)), "wb") as f:  # damage the stored value in place
        f.write(data[:-1] + b"!")
    assert artifact_store.exists(d) and not artifact_store.verify(d)
    with pytest.raises(DamagedArtifact) as caught:
        artifact_store.read(d)
    assert caught.value.expected == d and caught.value.actual == digest(data[:-1] + b"!")


def test_a_missing_value_is_reported_as_damaged(artifact_store):
    data = b"gone"
    d = digest(data)
    artifact_store.write(d, data)
    artifact_store.delete(d)
    artifact_store.delete(d)  # no error when it is gone
    assert not artifact_store.exists(d) and list(artifact_store.digests()) == []
    with pytest.raises(DamagedArtifact, match="is missing"):
        artifact_store.read(d)


def test_a_failed_write_leaves_nothing(artifact_store):
    def produce(f: io.RawIOBase) -> None:
        f.write(b"half a value")
        raise RuntimeError("serializer failed")

    with pytest.raises(RuntimeError, match="serializer failed"):
        artifact_store.write_stream(produce)
    assert list(artifact_store.digests()) == []


def test_stores_pickle_as_their_root(artifact_store):
    data = b"travels to a worker"
    d = digest(data)
    artifact_store.write(d, data)
    again = pickle.loads(pickle.dumps(artifact_store))
    assert bytes(again.read(d)) == data
