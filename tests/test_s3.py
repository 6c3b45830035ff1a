"""Artifacts on S3, end to end, against a real S3 server (moto's, on 127.0.0.1: ``tests/s3_server.py``).

A flow with ``FLOWKIT_ARTIFACTS=s3://...`` keeps its large values in the bucket and a
rerun in another process loads them from there; a deleted or damaged object is
recomputed; an upload whose bytes change on the way, or whose process is killed, never
shows under its final key, and gc aborts what a killed writer left; a bad URL, an
unknown bucket or an unreachable endpoint is a ``StoreError`` naming the URL, in
seconds, with no secret in it and nothing computed lost.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import flowkit as fk
from flowkit.errors import StoreError
from flowkit.hashing import digest
from flowkit.store.s3 import PART_SIZE, S3ArtifactFiles

ROOT = Path(fk.__file__).parent.parent


def wide_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(size=rows), "k": rng.integers(0, 9, rows)})


CALLS: list[str] = []


@fk.task
def frame(rows: int) -> pd.DataFrame:
    CALLS.append("frame")
    return wide_frame(rows)


@fk.task
def other_frame(rows: int) -> pd.DataFrame:
    return wide_frame(rows, seed=1)


@fk.task
def rows_of(df: pd.DataFrame) -> int:
    CALLS.append("rows_of")
    return len(df)


@fk.task
def small(n: int) -> int:
    CALLS.append("small")
    return n * 2


def objects(s3_server, url: str) -> dict[str, int]:
    """The objects under an s3:// URL, by key relative to it, with their sizes."""
    root = url.removeprefix("s3://")
    if not s3_server.fs.exists(root):
        return {}
    return {info["name"][len(root) + 1:]: info["size"] for info in s3_server.fs.find(root, detail=True).values()}


def pending_uploads(s3_server, url: str) -> list[dict]:
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return s3_server.fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix).get("Uploads", [])


def db_text(home: Path) -> str:
    """Every byte of the store's database (and its write-ahead log), as text to search."""
    return "".join(p.read_bytes().decode("latin-1") for p in home.glob("flowkit.db*"))


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_script(tmp_path: Path, body: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    script = tmp_path / "flow_script.py"
    script.write_text(textwrap.dedent(body))
    full = {**os.environ, **env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, str(script)], env=full, capture_output=True, text=True, timeout=timeout,
                          cwd=tmp_path)


FLOW_SCRIPT = """
    import json
    import numpy as np, pandas as pd
    import flowkit as fk

    @fk.task
    def frame(rows):
        rng = np.random.default_rng(0)
        return pd.DataFrame({"x": rng.normal(size=rows), "k": rng.integers(0, 9, rows)})

    @fk.task
    def rows_of(df):
        return len(df)

    @fk.flow
    def pipeline(rows: int = 2_500_000):
        df = frame(rows)
        return df, rows_of(df)

    run = pipeline.run()
    df, n = run.result()
    store = fk.Store.open()
    print(json.dumps({"statuses": {tr.name: tr.status for tr in run.task_runs}, "rows": n,
                      "checksum": float(df["x"].sum()), "k": int(df["k"].sum()), "artifact": run.artifact_id("frame"),
                      "uri": store.artifact(run.artifact_id("frame"))["uri"]}))
"""


def test_a_flow_keeps_its_large_values_in_the_bucket_and_another_process_loads_them_from_there(
        tmp_path, s3_server, s3_url):
    env = {**s3_server.env, "FLOWKIT_HOME": str(tmp_path / "home"), "FLOWKIT_ARTIFACTS": s3_url}
    first = run_script(tmp_path, FLOW_SCRIPT, env)
    assert first.returncode == 0, first.stderr
    made = json.loads(first.stdout)
    assert made["statuses"] == {"frame": "completed", "rows_of": "completed"} and made["rows"] == 2_500_000
    d = made["artifact"]
    assert made["uri"] == f"{s3_url}/{d[:2]}/{d}"  # no credentials in what is recorded
    stored = objects(s3_server, s3_url)
    assert list(stored) == [f"{d[:2]}/{d}"]
    parts = -(-stored[f"{d[:2]}/{d}"] // PART_SIZE)  # published by a multipart upload: its ETag counts the parts
    assert s3_server.fs.info(f"{s3_url}/{d[:2]}/{d}")["ETag"].strip('"').endswith(f"-{parts}")
    assert digest(s3_server.fs.cat_file(f"{s3_url}/{d[:2]}/{d}")) == d
    assert not (tmp_path / "home" / "artifacts").exists()  # nothing of it on the local disk
    assert pending_uploads(s3_server, s3_url) == []

    again = run_script(tmp_path, FLOW_SCRIPT, env)  # a new process: nothing in memory, the frame comes from S3
    assert again.returncode == 0, again.stderr
    loaded = json.loads(again.stdout)
    assert loaded["statuses"] == {"frame": "cached", "rows_of": "cached"}
    expected = wide_frame(2_500_000)
    assert (loaded["checksum"], loaded["k"]) == (float(expected["x"].sum()), int(expected["k"].sum()))
    assert objects(s3_server, s3_url) == stored
    for out in (first, again):  # nothing of the credentials in what the processes said
        assert s3_server.secret not in out.stdout + out.stderr and s3_server.access_key not in out.stdout + out.stderr
    assert s3_server.secret not in db_text(tmp_path / "home") and s3_server.access_key not in db_text(tmp_path / "home")


@pytest.mark.parametrize("damage", ["deleted", "corrupted", "truncated"])
def test_a_missing_or_damaged_object_is_recomputed(tmp_path, s3_server, s3_url, damage, caplog):
    store = fk.Store(tmp_path / "home", artifacts=s3_url)

    @fk.flow(store=store)
    def f():
        return rows_of(frame(40_000))

    first = f.run()
    d = first.artifact_id("frame")
    key = f"{s3_url}/{d[:2]}/{d}"
    good = s3_server.fs.cat_file(key)
    if damage == "deleted":
        s3_server.fs.rm(key)
    else:
        bad = bytearray(good)
        bad[len(bad) // 2] ^= 0xFF
        s3_server.fs.pipe_file(key, bytes(bad) if damage == "corrupted" else good[: len(good) // 2])
    CALLS.clear()
    with caplog.at_level(logging.WARNING, logger="flowkit"):
        second = f.run(refresh=["rows_of"])  # rows_of runs, so it needs the frame from the bucket
    assert second.result() == 40_000 and CALLS == ["frame", "rows_of"]
    assert second.task_run("frame").status == "completed"
    assert "damaged" in caplog.text and key in caplog.text
    assert s3_server.fs.cat_file(key) == good  # stored again, whole
    CALLS.clear()
    assert f.run(refresh=["rows_of"]).task_run("frame").status == "cached" and CALLS == ["rows_of"]


def test_an_upload_whose_bytes_change_on_the_way_is_never_published(tmp_path, s3_server, s3_url):
    store = fk.Store(tmp_path / "home", artifacts=s3_url)
    assert isinstance(store.files, S3ArtifactFiles)
    changed: list[int] = []

    def flip_a_byte(request, **_):  # what a faulty network or proxy would do, after the MD5 was taken
        body = request.body.getvalue()  # botocore sends a part from a BytesIO
        changed.append(len(body))
        request.body = io.BytesIO(bytes([body[0] ^ 0xFF]) + body[1:])

    assert not store.files.exists("00" * 16)  # the client and its connections are up: it is the one that uploads
    client = store.files.fs.s3
    client.meta.events.register("before-send.s3.UploadPart", flip_a_byte)

    @fk.flow(store=store)
    def f():
        return small(1), rows_of(frame(40_000))

    run = f.run()
    assert changed, "the hook never saw a part"
    assert run.status == "failed" and run.task_run("small").status == "completed"
    error = run.task_run("frame").error
    assert "storing the result of task 'frame'" in error and s3_url in error and "changed on the way" in error
    assert objects(s3_server, s3_url) == {}  # nothing under any final key
    assert pending_uploads(s3_server, s3_url) == []  # and the upload was aborted

    client.meta.events.unregister("before-send.s3.UploadPart", flip_a_byte)
    CALLS.clear()
    rerun = f.run()  # the network is sound again: what was computed is kept, the rest is stored
    assert rerun.task_run("small").status == "cached" and CALLS == ["frame", "rows_of"]
    d = rerun.artifact_id("frame")
    assert list(objects(s3_server, s3_url)) == [f"{d[:2]}/{d}"]


def test_where_etags_are_no_md5s_the_sizes_that_landed_are_checked_before_publishing(tmp_path, s3_server, s3_url):
    """SSE-KMS and SSE-C answer ETags that are no MD5s (moto never does: the answer is made to say so)."""
    store = fk.Store(tmp_path / "home", artifacts=s3_url)
    assert not store.files.exists("00" * 16)  # the client and its connections are up
    client = store.files.fs.s3

    def encrypted_with_kms(parsed, **_):
        parsed["ServerSideEncryption"] = "aws:kms"

    def cut_short(request, **_):  # a part that lost its last bytes on the way
        body = request.body.getvalue()[:-10]
        request.body, request.headers["Content-Length"] = io.BytesIO(body), str(len(body))

    client.meta.events.register("after-call.s3.UploadPart", encrypted_with_kms)
    data = os.urandom(3 << 20)
    assert str(store.files.write(digest(data), data)).endswith(digest(data))  # sizes match: published
    assert store.files.read(digest(data)) == data

    client.meta.events.register("before-send.s3.UploadPart", cut_short)
    other = os.urandom(3 << 20)
    with pytest.raises(StoreError, match=r"part 1 of the upload is \(3145718, .*but \(3145728, ") as caught:
        store.files.write(digest(other), other)
    assert s3_url in str(caught.value)
    assert not store.files.exists(digest(other)) and pending_uploads(s3_server, s3_url) == []


def test_a_killed_writer_leaves_no_final_key_and_gc_aborts_its_upload_once_it_is_old(tmp_path, s3_server, s3_url):
    env = {**s3_server.env, "FLOWKIT_HOME": str(tmp_path / "home"), "FLOWKIT_ARTIFACTS": s3_url,
           "FLOWKIT_FAULTS": "cache.after_fsync=SIGKILL"}  # parts uploaded and checked, not yet published
    killed = run_script(tmp_path, FLOW_SCRIPT, env)
    assert killed.returncode == -9, killed.stderr
    assert objects(s3_server, s3_url) == {}
    [upload] = pending_uploads(s3_server, s3_url)
    store = fk.Store(tmp_path / "home", artifacts=s3_url)
    [(name, when)] = list(store.files.temporaries())
    assert name.endswith(f"?uploadId={upload['UploadId']}") and abs(when - time.time()) < 600

    fresh = store.gc()  # a write that young may still be going on
    assert fresh.temporaries == [] and len(pending_uploads(s3_server, s3_url)) == 1
    seen = store.gc(now=time.time() + 7200, dry_run=True)
    assert seen.temporaries == [name] and len(pending_uploads(s3_server, s3_url)) == 1
    report = store.gc(now=time.time() + 7200)
    assert report.temporaries == [name] and pending_uploads(s3_server, s3_url) == []

    del env["FLOWKIT_FAULTS"]
    resumed = run_script(tmp_path, FLOW_SCRIPT, env)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["statuses"] == {"frame": "completed", "rows_of": "completed"}


def test_gc_removes_unreferenced_objects_and_old_temporary_objects_in_the_bucket(tmp_path, s3_server, s3_url):
    store = fk.Store(tmp_path / "home", artifacts=s3_url)

    @fk.flow(store=store)
    def f():
        return frame(40_000), other_frame(40_000)

    run = f.run()
    kept, dropped = run.artifact_id("frame"), run.artifact_id("other_frame")
    leftover = f"{s3_url}/{dropped[:2]}/.tmp-0123456789abcdef"  # what an fsspec write cut short leaves
    s3_server.fs.pipe_file(leftover, b"half a value")
    store.clear_cache(tasks=["other_frame"])
    assert store.gc(keep_days=0).artifacts == []  # young objects are spared: a run may not have recorded them yet
    report = store.gc(keep_days=0, now=time.time() + 7200)
    assert report.artifacts == [dropped]
    assert report.temporaries == [f"{dropped[:2]}/.tmp-0123456789abcdef"]
    assert sorted(objects(s3_server, s3_url)) == [f"{kept[:2]}/{kept}"]  # pinned by its cache entry
    assert store.artifact(dropped).removed_by == "gc"


@pytest.mark.dask
def test_dask_workers_write_and_read_the_bucket(tmp_path, s3_server, s3_url):
    store = fk.Store(tmp_path / "home", artifacts=s3_url)
    # started after s3_url set the environment: the worker processes inherit the endpoint and credentials
    with fk.DaskExecutor(n_workers=1, threads_per_worker=1, processes=True) as executor:
        @fk.flow(store=store, executor=executor)
        def f():
            return rows_of(frame(40_000))

        first = f.run()
        assert first.result() == 40_000 and first.task_run("frame").worker.startswith("tcp://127.0.0.1:")
        d = first.artifact_id("frame")
        assert store.artifact(d)["uri"] == f"{s3_url}/{d[:2]}/{d}" and list(objects(s3_server, s3_url)) == [
            f"{d[:2]}/{d}"]
        again = f.run(refresh=["rows_of"])  # the worker loads the frame from the bucket
        assert again.result() == 40_000 and again.task_run("frame").status == "cached"


# --- bad input -------------------------------------------------------------------------------------

def test_an_unknown_url_scheme_is_a_store_error_naming_the_url(tmp_path, monkeypatch):
    with pytest.raises(StoreError, match=r"s4://x.*Protocol not known") as caught:
        fk.Store(tmp_path / "home", artifacts="s4://x")
    assert "FLOWKIT_ARTIFACTS" in str(caught.value)
    monkeypatch.setenv("FLOWKIT_ARTIFACTS", "s4://x")
    with pytest.raises(StoreError, match="s4://x"):
        fk.Store(tmp_path / "home")


def test_credentials_in_the_url_are_refused_without_being_repeated(tmp_path):
    with pytest.raises(StoreError) as caught:
        fk.Store(tmp_path / "home", artifacts="s3://AKIAEXAMPLE:wJalrXUtnFEMI@bucket/prefix")
    message = str(caught.value)
    assert "s3://***@bucket/prefix" in message and "AWS_ACCESS_KEY_ID" in message
    assert "wJalrXUtnFEMI" not in message and "AKIAEXAMPLE" not in message


def test_a_bucket_url_without_a_bucket_is_refused(tmp_path):
    with pytest.raises(StoreError, match="names no bucket"):
        fk.Store(tmp_path / "home", artifacts="s3://")


def _secret_free(s3_server, *texts: str, debug_logs: str = "") -> None:
    """No secret key anywhere, and no access key id in what flowkit says or records (botocore's own
    DEBUG lines show the id, never the secret, in the signature header they log)."""
    for text in texts:
        assert s3_server.secret not in text and s3_server.access_key not in text
    assert s3_server.secret not in debug_logs


def _flowkit_logs(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("flowkit"))


def _run_that_cannot_store(tmp_path, store, caplog):
    @fk.flow(store=store)
    def f():
        return small(1), rows_of(frame(40_000))

    start = time.monotonic()
    with caplog.at_level(logging.DEBUG):
        run = f.run()
    return f, run, time.monotonic() - start


def test_an_unknown_bucket_fails_the_task_clearly_and_keeps_what_was_computed(tmp_path, s3_server, s3_url, caplog):
    missing = "s3://flowkit-no-such-bucket-here/prefix"
    store = fk.Store(tmp_path / "home", artifacts=missing)
    f, run, took = _run_that_cannot_store(tmp_path, store, caplog)
    assert took < 20
    assert run.status == "failed" and run.task_run("small").status == "completed"
    error = run.task_run("frame").error
    assert missing in error and "does not exist" in error and "Create the bucket 'flowkit-no-such-bucket-here'" in error
    _secret_free(s3_server, error, _flowkit_logs(caplog), db_text(tmp_path / "home"), debug_logs=caplog.text)

    fixed = fk.Store(tmp_path / "home", artifacts=s3_url)  # the right bucket: what was computed is kept
    CALLS.clear()
    rerun = f.with_options(store=fixed).run()
    assert rerun.status == "completed" and rerun.task_run("small").status == "cached" and "small" not in CALLS


def test_an_unreachable_endpoint_fails_in_seconds_naming_the_url_and_no_secret(tmp_path, s3_server, s3_url, caplog,
                                                                               monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    store = fk.Store(tmp_path / "home", artifacts=s3_url)
    f, run, took = _run_that_cannot_store(tmp_path, store, caplog)
    assert took < 30, f"{took:.1f} s to give up"
    assert run.status == "failed" and run.task_run("small").status == "completed"
    error = run.task_run("frame").error
    assert s3_url in error and "Could not connect" in error and "AWS_ENDPOINT_URL" in error
    _secret_free(s3_server, error, str(run.error), _flowkit_logs(caplog), db_text(tmp_path / "home"),
                 debug_logs=caplog.text)
    start = time.monotonic()
    with pytest.raises(StoreError, match=s3_url) as caught:  # gc says so too, as quickly
        store.gc()
    assert time.monotonic() - start < 30 and "can be reached" in str(caught.value)

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)  # the endpoint is back
    CALLS.clear()
    rerun = f.with_options(store=fk.Store(tmp_path / "home", artifacts=s3_url)).run()
    assert rerun.status == "completed" and rerun.task_run("small").status == "cached" and "small" not in CALLS


SILENT_SCRIPT = """
    import json, time
    import flowkit as fk
    from flowkit.errors import StoreError

    store = fk.Store(artifacts=URL)
    start = time.monotonic()
    try:
        store.files.write("ab" * 16, b"x" * 100)
    except StoreError as exc:
        print(json.dumps({"error": str(exc), "seconds": time.monotonic() - start}))
"""


def test_a_server_that_never_answers_is_given_up_on_within_the_configured_timeouts(tmp_path, s3_server, s3_url):
    with socket.socket() as silent:  # accepts connections (the kernel does) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        env = {**s3_server.env, "FLOWKIT_HOME": str(tmp_path / "home"),
               "AWS_ENDPOINT_URL": f"http://127.0.0.1:{silent.getsockname()[1]}",
               "FSSPEC_S3_CONFIG_KWARGS": json.dumps({"read_timeout": 0.5, "connect_timeout": 0.5})}
        out = run_script(tmp_path, SILENT_SCRIPT.replace("URL", repr(s3_url)), env, timeout=60)
    assert out.returncode == 0, out.stderr
    said = json.loads(out.stdout)
    assert said["seconds"] < 20 and s3_url in said["error"] and "Read timeout" in said["error"]
    _secret_free(s3_server, out.stdout, out.stderr)
