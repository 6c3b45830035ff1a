"""OpenLineage export: real runs, sent through the real client to a real HTTP receiver on 127.0.0.1.

Every event is validated against the OpenLineage spec and the schemas of its facets, vendored in
``tests/data/openlineage`` (their ``$ref``\\ s resolved locally). Nothing sleeps: the tests wait
for delivery with ``flowkit.export.openlineage.flush`` and for the receiver with timeouts.
"""

from __future__ import annotations

import gc
import http.server
import json
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import uuid
import weakref
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("openlineage.client")
jsonschema = pytest.importorskip("jsonschema")
pd = pytest.importorskip("pandas")

from referencing import Registry, Resource  # noqa: E402  (jsonschema's own dependency)

import flowkit as fk  # noqa: E402
from conftest import CALLS, Flaky, failing, inc, one  # noqa: E402
from flowkit.export import openlineage, openlineage_events  # noqa: E402
from flowkit._worker import ArtifactInfo  # noqa: E402
from flowkit.events import TaskFinished  # noqa: E402
from flowkit.records import TaskRun  # noqa: E402

DATA = Path(__file__).parent / "data" / "openlineage"
ROOT = Path(__file__).resolve().parent.parent
TERMINAL = {"COMPLETE", "FAIL", "ABORT"}


# --- the spec ---------------------------------------------------------------------------------

def _validators() -> tuple[Any, dict[str, Any], dict[str, str]]:
    docs = [json.loads(path.read_text()) for path in sorted(DATA.glob("*.json"))]
    registry = Registry().with_resources((doc["$id"], Resource.from_contents(doc)) for doc in docs)
    checker = jsonschema.FormatChecker()
    spec = next(doc for doc in docs if doc["$id"].endswith("/OpenLineage.json"))
    facets, ids = {}, {}
    for doc in docs:
        if doc is not spec:
            for key in doc["properties"]:
                facets[key] = jsonschema.Draft202012Validator(doc, registry=registry, format_checker=checker)
                ids[key] = doc["$id"]
    return jsonschema.Draft202012Validator(spec, registry=registry, format_checker=checker), facets, ids


SPEC, FACETS, FACET_IDS = _validators()


def _facet_maps(event: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    maps = [("run", event["run"].get("facets", {})), ("job", event["job"].get("facets", {}))]
    for side in ("inputs", "outputs"):
        for dataset in event.get(side, []):
            maps.append((f"{side} {dataset['name']}", dataset.get("facets", {})))
            maps.append((f"{side} {dataset['name']}", dataset.get("inputFacets", dataset.get("outputFacets", {}))))
    return maps


def validate(event: dict[str, Any]) -> None:
    """The event against the spec, and each facet against its own schema (every facet must have one)."""
    SPEC.validate(event)
    assert event["schemaURL"] == "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
    uuid.UUID(event["run"]["runId"])
    for where, facets in _facet_maps(event):
        for key, facet in facets.items():
            assert key in FACETS, f"{where}: facet {key!r} has no vendored schema to check it against"
            FACETS[key].validate({key: facet})
            if not key.startswith("flowkit_"):  # a standard facet names the version of the schema it follows
                assert facet["_schemaURL"].startswith(FACET_IDS[key]), (key, facet["_schemaURL"])


def by_run(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        out.setdefault(event["run"]["runId"], []).append(event)
    return out


def assert_one_start_and_one_end(events: list[dict[str, Any]]) -> None:
    for run_id, mine in by_run(events).items():
        kinds = [e["eventType"] for e in mine]
        assert kinds[0] == "START" and kinds.count("START") == 1, (run_id, kinds)
        assert len(kinds) == 2 and kinds[1] in TERMINAL, (run_id, kinds)


def job(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["job"]["name"] == name]


def end_of(events: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (end,) = [e for e in job(events, name) if e["eventType"] in TERMINAL]
    return end


# --- a real receiver --------------------------------------------------------------------------

class Receiver:
    """An OpenLineage HTTP endpoint on 127.0.0.1: ``POST /api/v1/lineage``, each body kept.

    ``hold`` makes it take requests and answer none until it is set (a backend that hangs).
    """

    def __init__(self, hold: threading.Event | None = None) -> None:
        self.received: queue.Queue[dict[str, Any]] = queue.Queue()
        self.paths: list[str] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.paths.append(self.path)
                if hold is not None:
                    hold.wait(30)
                receiver.received.put(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[dict[str, Any]]:
        """What arrived so far (call after ``openlineage.flush()``: delivered means received)."""
        out = []
        while True:
            try:
                out.append(self.received.get_nowait())
            except queue.Empty:
                return out

    def wait_for(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        return [self.received.get(timeout=timeout) for _ in range(count)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(monkeypatch):
    found = Receiver()
    monkeypatch.setenv("OPENLINEAGE_URL", found.url)
    yield found
    found.close()


def delivered(receiver: Receiver) -> list[dict[str, Any]]:
    assert openlineage.flush(30), "the events were not delivered in 30 s"
    events = receiver.events()
    for event in events:
        validate(event)
    return events


# --- flows -----------------------------------------------------------------------------------

@fk.task
def load(rows: int) -> pd.DataFrame:
    return pd.DataFrame({"id": range(rows), "amount": [float(i) for i in range(rows)]})


@fk.task(checks=[fk.checks.rows(min=1), fk.checks.no_nulls(), fk.checks.rows(min=100, severity="warn")])
def clean(frame: pd.DataFrame, notes: Path) -> pd.DataFrame:
    CALLS.append("clean")
    return frame[frame.amount >= 0]


@fk.task
def total(frame: pd.DataFrame) -> float:
    return float(frame.amount.sum())


@fk.flow
def report(rows: int = 3, notes: str = "notes.txt") -> float:
    return total(clean(load(rows), fk.File(notes)))


@fk.task
def constant() -> pd.DataFrame:
    return pd.DataFrame({"id": [1, 2], "amount": [0.5, 1.5]})


@fk.flow
def twins() -> list[float]:
    """Three tasks without inputs that store the same frame (one artifact), each read by a task of its own."""
    return [total(constant()) for _ in range(3)]


@fk.task(checks=[fk.checks.rows(min=10)])
def strict(frame: pd.DataFrame) -> pd.DataFrame:
    return frame


@fk.flow
def gated(rows: int = 3) -> pd.DataFrame:
    return strict(load(rows))


FLAKY = Flaky(2, value=7)


@fk.task(retries=2)
def flaky() -> int:
    return FLAKY()


@fk.flow
def retried() -> int:
    return flaky()


@fk.task
def interrupt(x: int) -> int:
    raise KeyboardInterrupt


@fk.flow
def interrupted() -> int:
    return inc(interrupt(one()))


# --- live runs --------------------------------------------------------------------------------

def test_a_run_sends_one_start_and_one_end_per_run_to_openlineage_url(receiver, tmp_path):
    (tmp_path / "notes.txt").write_text("checked by hand")
    run = report.run(rows=3)
    events = delivered(receiver)
    assert set(receiver.paths) == {"/api/v1/lineage"}
    assert len(events) == 2 * (len(run.task_runs) + 1) == 8
    assert_one_start_and_one_end(events)
    flow_id = str(uuid.UUID(run.id))
    assert {e["run"]["runId"] for e in job(events, "report")} == {flow_id}
    assert events[0]["eventType"] == "START" and events[0]["job"]["name"] == "report"
    assert events[-1]["eventType"] == "COMPLETE" and events[-1]["job"]["name"] == "report"
    for name in ("report.load", "report.clean", "report.total"):
        for event in job(events, name):
            assert event["job"]["namespace"] == "flowkit"
            assert event["run"]["facets"]["parent"]["run"]["runId"] == flow_id
            parent_job = event["run"]["facets"]["parent"]["job"]
            assert (parent_job["namespace"], parent_job["name"]) == ("flowkit", "report")
            assert event["run"]["facets"]["parent"]["root"]["run"]["runId"] == flow_id
    # datasets: the store's artifacts by id, the file by its path; a table's schema
    store = run.store
    namespace = f"file://{socket.gethostname()}{store.artifacts_root}"
    loaded, cleaned = run.artifact_id("load"), run.artifact_id("clean")
    load_end, clean_end = end_of(events, "report.load"), end_of(events, "report.clean")
    assert [(d["namespace"], d["name"]) for d in load_end["outputs"]] == [(namespace, loaded)]
    fields = load_end["outputs"][0]["facets"]["schema"]["fields"]
    assert [(f["name"], f["type"]) for f in fields] == [("id", "int64"), ("amount", "float64")]
    assert load_end["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 3
    assert {(d["namespace"], d["name"]) for d in clean_end["inputs"]} == {
        (namespace, loaded), ("file", str(tmp_path / "notes.txt"))}
    # the checks, as data quality assertions on what they checked
    assertions = clean_end["outputs"][0]["facets"]["dataQualityAssertions"]["assertions"]
    assert [(a["assertion"], a["success"], a["severity"]) for a in assertions] == [
        ("rows", True, "error"), ("no_nulls", True, "error"), ("rows", False, "warn")]
    assert clean_end["outputs"][0]["name"] == cleaned
    # the flow's job: its code and where it is
    flow_job = events[0]["job"]["facets"]
    assert flow_job["jobType"]["jobType"] == "FLOW" and "def report(" in flow_job["sourceCode"]["sourceCode"]
    location = flow_job["sourceCodeLocation"]
    assert location["type"] == "git" and location["path"] == "tests/test_openlineage.py"
    assert location["version"] == run.info["git_commit"]
    params = {p["key"]: p["value"] for p in events[0]["run"]["facets"]["executionParameters"]["parameters"]}
    assert params == {"rows": "3", "notes": "notes.txt"}
    assert events[0]["run"]["facets"]["flowkit_run"]["runId"] == run.id


def test_a_failed_task_sends_its_error_and_what_it_skipped_ends_aborted(receiver):
    run = failing.run()
    events = delivered(receiver)
    assert_one_start_and_one_end(events)
    boom = end_of(events, "failing.boom")
    assert boom["eventType"] == "FAIL"
    error = boom["run"]["facets"]["errorMessage"]
    assert error["message"] == "ValueError: boom on 1" and error["programmingLanguage"] == "python"
    assert "raise ValueError" in error["stackTrace"]
    skipped = [tr.node for tr in run.task_runs if tr.status == "skipped"]
    assert skipped
    for node in skipped:
        end = end_of(events, f"failing.{node}")
        assert end["eventType"] == "ABORT" and end["run"]["facets"]["flowkit_task"]["status"] == "skipped"
    flow_end = end_of(events, "failing")
    assert flow_end["eventType"] == "FAIL"
    assert "task 'boom'" in flow_end["run"]["facets"]["errorMessage"]["message"]


def test_a_failed_check_is_sent_as_the_failed_task_runs_test_results(receiver):
    run = gated.run()
    events = delivered(receiver)
    strict_end = end_of(events, "gated.strict")
    assert run.status == "failed" and strict_end["eventType"] == "FAIL" and strict_end["outputs"] == []
    (test,) = strict_end["run"]["facets"]["test"]["tests"]
    assert (test["type"], test["status"], test["actual"]) == ("rows", "fail", "3")


def test_a_cached_rerun_sends_complete_with_the_task_run_that_computed_it(receiver, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    first = report.run()
    second = report.run()
    assert {tr.status for tr in second.task_runs} == {"cached"}
    events = delivered(receiver)
    assert_one_start_and_one_end(events)
    rerun = [e for e in events if e["run"]["facets"].get("parent", {}).get("run", {}).get("runId")
             == str(uuid.UUID(second.id))]
    assert len(rerun) == 2 * len(second.task_runs)
    for tr in second.task_runs:
        end = end_of(rerun, f"report.{tr.node}")
        cache = end["run"]["facets"]["flowkit_cache"]
        assert end["eventType"] == "COMPLETE" and end["outputs"] == []
        assert cache["sourceTaskRun"] == f"{first.id}/{tr.node}" and cache["foundBy"] == "key"
        computed = end_of([e for e in events if e not in rerun], f"report.{tr.node}")
        assert cache["sourceRunId"] == computed["run"]["runId"]
        assert cache["artifactId"] == first.artifact_id(tr.node)


def test_a_task_retried_twice_sends_one_start_and_one_end(receiver):
    FLAKY.calls = 0
    run = retried.run()
    assert run.task_run("flaky").attempts == 3
    events = delivered(receiver)
    assert_one_start_and_one_end(events)
    kinds = [e["eventType"] for e in job(events, "retried.flaky")]
    assert kinds == ["START", "COMPLETE"]
    assert end_of(events, "retried.flaky")["run"]["facets"]["flowkit_task"]["attempts"] == 3


def test_a_cancelled_run_ends_aborted(receiver):
    with pytest.raises(KeyboardInterrupt):
        interrupted.run()
    events = delivered(receiver)
    assert_one_start_and_one_end(events)
    assert end_of(events, "interrupted")["eventType"] == "ABORT"
    end = end_of(events, "interrupted.interrupt")
    assert end["eventType"] == "ABORT" and end["run"]["facets"]["flowkit_task"]["status"] == "cancelled"
    assert end_of(events, "interrupted.inc")["run"]["facets"]["flowkit_task"]["status"] == "skipped"


def test_a_full_queue_still_sends_one_start_and_one_end_per_task_run(receiver, monkeypatch):
    monkeypatch.setattr(openlineage, "QUEUE_SIZE", 1)  # every task's event is left to the run's end
    run = failing.run()
    events = delivered(receiver)
    assert_one_start_and_one_end(events)
    assert len(by_run(events)) == len(run.task_runs) + 1


def test_a_queued_task_keeps_nothing_alive_but_its_facts(monkeypatch):
    # What waits in the queue until the run's end makes the cyclic collector run more often (a
    # 5,000-task fan-out lost 4% to it): no event tuples, no empty lists, an artifact once.
    monkeypatch.setattr(openlineage._Emitter, "_work", lambda self: None)
    listener = openlineage.OpenLineageListener(openlineage._Emitter(("test",), "flowkit", 1.0), None)
    runs = [TaskRun(f"r/t#{i}", "r", f"t#{i}", "t", "completed", artifact_id="d") for i in range(4)]
    info = ArtifactInfo(("d", "pickle", 4, {"type": "builtins.NoneType"}, b"", None))
    row = ("r", "t#3", None, "param", None, "n", "3", "3")
    for i, tr in enumerate(runs):
        listener.on_event(TaskFinished(tr, info, [row] if i == 3 else [], True))
    queued = list(listener.handle.events)
    assert queued == [info, runs[0], runs[1], runs[2], row, runs[3]]
    assert all(a is b for a, b in zip(queued, [info, *runs[:3], row, runs[3]]))


class _Value:
    """A result that can be watched with a weak reference."""


@fk.task
def make_value() -> _Value:
    return _Value()


@fk.flow
def valued() -> _Value:
    return make_value()


def test_the_sender_keeps_nothing_of_a_delivered_run_alive(receiver):
    # The last item the thread handled is a run's RunFinished, which holds the whole run: kept
    # while the thread waited, it was freed on that thread in the middle of the next run.
    run = valued.with_options(store=False).run()
    watched = weakref.ref(run.result())
    del run
    assert len(delivered(receiver)) == 4
    gc.collect()
    assert watched() is None


def test_a_run_without_a_store_sends_its_runs_without_artifacts(receiver):
    run = failing.with_options(store=False).run()
    events = delivered(receiver)
    assert len(events) == 2 * (len(run.task_runs) + 1)
    assert_one_start_and_one_end(events)
    assert [e for e in events if e.get("inputs") or e.get("outputs")] == []


def test_the_namespace_comes_from_openlineage_namespace(receiver, monkeypatch):
    monkeypatch.setenv("OPENLINEAGE_NAMESPACE", "analytics")
    failing.run()
    events = delivered(receiver)
    assert {e["job"]["namespace"] for e in events} == {"analytics"}
    assert {e["run"]["facets"]["parent"]["job"]["namespace"] for e in events if "parent" in e["run"]["facets"]} == {
        "analytics"}


def test_a_triggered_run_names_the_run_that_triggered_it_as_its_parent(receiver):
    @fk.task
    def start_other() -> str:
        return fk.trigger(retried, reason="drift").id

    @fk.flow
    def watcher() -> str:
        return start_other()

    FLAKY.calls = 10  # no failures this time
    outer = watcher.run()
    events = delivered(receiver)
    child = outer.value
    (start,) = [e for e in events if e["run"]["runId"] == str(uuid.UUID(child)) and e["eventType"] == "START"]
    parent = start["run"]["facets"]["parent"]
    assert parent["run"]["runId"] == str(uuid.UUID(outer.id)) and parent["job"]["name"] == "watcher"
    assert start["run"]["facets"]["flowkit_run"]["triggeredBy"] == outer.id


# --- trouble ----------------------------------------------------------------------------------

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_receiver_that_is_down_costs_the_run_nothing_and_is_logged_once(monkeypatch, caplog):
    url = f"http://lineage:s3cr3t-pass@127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "http")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__URL", url)
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__RETRY", '{"total": 1, "backoff_factor": 0}')
    with caplog.at_level(logging.ERROR, logger="flowkit"):
        first, second = failing.run(), failing.run()
        assert openlineage.flush(30)
    assert first.status == second.status == "failed"  # the flow's own failure, nothing of OpenLineage's
    errors = [r.getMessage() for r in caplog.records if "OpenLineage" in r.getMessage()]
    assert len(errors) == 1, errors
    port = url.rsplit(":", 1)[1]
    assert f"http://127.0.0.1:{port}/api/v1/lineage" in errors[0]
    assert "s3cr3t" not in caplog.text


def test_a_backend_that_never_answers_does_not_hold_the_run(monkeypatch):
    hold = threading.Event()
    hanging = Receiver(hold=hold)
    monkeypatch.setenv("OPENLINEAGE_URL", hanging.url)
    try:
        run = failing.run()
        assert run.status == "failed" and len(run.task_runs) == 5  # its own failure; every task recorded
        assert not openlineage.flush(0.2)  # the run returned while its first event still waits for an answer
    finally:
        hold.set()
        assert openlineage.flush(30)
        hanging.close()
    assert hanging.events()


def test_openlineage_disabled_turns_it_off(receiver, monkeypatch):
    monkeypatch.setenv("OPENLINEAGE_DISABLED", "true")
    assert openlineage.listener(None) is None and not openlineage.configured()
    failing.run()
    assert openlineage.flush(5) and receiver.events() == []


def test_an_openlineage_yml_in_the_working_folder_configures_the_file_transport(tmp_path):
    path = tmp_path / "events.jsonl"
    (tmp_path / "openlineage.yml").write_text(
        f"transport:\n  type: file\n  log_file_path: {path}\n  append: true\n")
    run = failing.run()
    assert openlineage.flush(30)
    events = [json.loads(line) for line in path.read_text().splitlines()]
    for event in events:
        validate(event)
    assert len(events) == 2 * (len(run.task_runs) + 1)
    assert_one_start_and_one_end(events)


def test_nothing_of_openlineage_is_imported_while_it_is_not_configured(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENLINEAGE")}
    code = ("import sys, flowkit as fk\n"
            "@fk.task\ndef one(): return 1\n"
            "@fk.flow\ndef f(): return one()\n"
            "assert f() == 1\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('openlineage', 'requests', 'attr')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path,
                         env={**env, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}).stdout
    assert out.strip() == "[]"


# --- the CLI ----------------------------------------------------------------------------------

FLOW_FILE = '''
import flowkit as fk

@fk.task
def numbers(n: int) -> list:
    return list(range(n))

@fk.task
def add_up(xs: list) -> int:
    return sum(xs)

@fk.flow
def counting(n: int = 4) -> int:
    return add_up(numbers(n))
'''


def _cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowkit", *args], capture_output=True, text=True, cwd=cwd,
                          env={**env, "PYTHONPATH": str(ROOT)}, timeout=120)


def _plain_env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("OPENLINEAGE")}, **extra}


def key(event: dict[str, Any]) -> tuple[str, str]:
    return event["run"]["runId"], event["eventType"]


def _without_client_facets(event: dict[str, Any]) -> dict[str, Any]:
    """An event less what the client adds when it sends (its ``tags`` run facet)."""
    event = json.loads(json.dumps(event))
    event["run"]["facets"].pop("tags", None)
    return event


def test_flowkit_run_delivers_before_it_exits_and_the_export_matches_what_was_sent(receiver, tmp_path):
    (tmp_path / "counting.py").write_text(FLOW_FILE)
    env = _plain_env(OPENLINEAGE_URL=receiver.url, FLOWKIT_HOME=str(tmp_path / "home"))
    ran = _cli("run", "counting.py:counting", "-p", "n=5", cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr
    live = receiver.wait_for(6)  # sent before the process exited: no flush was called
    for event in live:
        validate(event)
    assert_one_start_and_one_end(live)
    run_id = str(uuid.UUID(live[0]["run"]["runId"])).replace("-", "")
    exported = _cli("lineage", "--openlineage", run_id[:10], cwd=tmp_path, env=_plain_env(
        FLOWKIT_HOME=str(tmp_path / "home")))
    assert exported.returncode == 0, exported.stderr
    past = [json.loads(line) for line in exported.stdout.splitlines()]
    for event in past:
        validate(event)
    assert sorted(map(_without_client_facets, live), key=key) == sorted(past, key=key)


def test_the_export_of_a_run_in_process_matches_its_live_events(receiver, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    report.run()
    first = report.run(rows=4)  # loads and cleans anew; nothing cached by content
    failing.run()
    twins.run()  # its second and third `constant` queue their task runs alone: the artifact was described already
    live = delivered(receiver)
    for run in fk.runs(limit=4):
        past = [json.loads(openlineage_events.to_json(e)) for e in openlineage.run_events(run.id)]
        for event in past:
            validate(event)
        mine = [_without_client_facets(e) for e in live if e["run"]["runId"] in {p["run"]["runId"] for p in past}]
        assert sorted(mine, key=key) == sorted(past, key=key), run.flow
    assert Counter(e["eventType"] for e in live)["START"] == len(by_run(live))
    assert first.status == "completed"


def test_lineage_emit_sends_a_past_run_through_the_configured_client(receiver, tmp_path):
    (tmp_path / "counting.py").write_text(FLOW_FILE)
    home = str(tmp_path / "home")
    assert _cli("run", "counting.py:counting", cwd=tmp_path, env=_plain_env(FLOWKIT_HOME=home)).returncode == 0
    run_id = fk.runs(home=home)[0].id
    sent = _cli("lineage", "--openlineage", run_id, "--emit", cwd=tmp_path,
                env=_plain_env(FLOWKIT_HOME=home, OPENLINEAGE_URL=receiver.url))
    assert sent.returncode == 0, sent.stderr
    assert "sent 6 OpenLineage events" in sent.stderr
    events = receiver.wait_for(6)
    for event in events:
        validate(event)
    assert_one_start_and_one_end(events)


def test_lineage_emit_without_a_configuration_says_how_to_configure_it(tmp_path):
    (tmp_path / "counting.py").write_text(FLOW_FILE)
    home = str(tmp_path / "home")
    assert _cli("run", "counting.py:counting", cwd=tmp_path, env=_plain_env(FLOWKIT_HOME=home)).returncode == 0
    run_id = fk.runs(home=home)[0].id
    out = _cli("lineage", "--openlineage", run_id, "--emit", cwd=tmp_path,
               env=_plain_env(FLOWKIT_HOME=home, HOME=str(tmp_path)))
    assert out.returncode == 2 and "OPENLINEAGE_URL" in out.stderr



class _Wake:
    """A stand-in for the sender's wake-up event: records how long the thread would pause, never waits."""

    def __init__(self) -> None:
        self.pauses: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.pauses.append(timeout or 0.0)
        return False

    def clear(self) -> None:
        pass

    def set(self) -> None:
        pass


class _Clock:
    """The sender's clocks, moved by hand: wall time, and the CPU time of the other threads."""

    def __init__(self) -> None:
        self.now = 0.0
        self.others = 0.0  # CPU seconds the rest of the process used

    def perf_counter(self) -> float:
        return self.now

    monotonic = perf_counter

    def thread_time(self) -> float:
        return 0.0

    def process_time(self) -> float:
        return self.others


def test_a_run_starts_with_the_senders_share_spent_so_its_first_second_is_left_alone(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(openlineage, "time", clock)
    monkeypatch.setattr(openlineage._Emitter, "_work", lambda self: None)  # no thread sends anything here
    emitter = openlineage._Emitter(("test",), "flowkit", 1.0)
    emitter.wake = wake = _Wake()
    emitter.begin(openlineage._RunHandle(None))
    assert openlineage.QUIET == 1.0  # the second docs/lineage.md names
    for tenth in range(10):  # the run keeps the interpreter busy: the thread only looks, every _LOOK s
        clock.now = clock.others = tenth / 10
        assert emitter._hold_back()
    assert wake.pauses and max(wake.pauses) <= openlineage._LOOK
    clock.now = clock.others = openlineage.QUIET + 0.01
    assert not emitter._hold_back()  # then it may send, within its share
    emitter.begin(openlineage._RunHandle(None))  # a second run beside it does not reset the thread's budget
    assert not emitter._hold_back()


def test_the_client_is_set_up_only_once_a_busy_run_has_earned_its_cost(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(openlineage, "time", clock)
    monkeypatch.setattr(openlineage._Emitter, "_work", lambda self: None)
    emitter = openlineage._Emitter(("test",), "flowkit", 1.0)
    emitter.wake = wake = _Wake()
    emitter.begin(openlineage._RunHandle(None))
    setup = 0.3  # CPU seconds importing the client takes (openlineage._SETUP_IMPORT)
    for second in range(1, 60):  # the run keeps the interpreter busy: the thread waits, looking every _LOOK s
        clock.now, clock.others = float(second), float(second)
        assert emitter._hold_back(setup)
    assert max(wake.pauses) <= openlineage._LOOK
    clock.now = clock.others = 61.0  # 0.5% of 61 s covers the setup
    assert not emitter._hold_back(setup)
    clock.now = clock.others = 1000.0  # what it earns is bounded by what it needs
    assert not emitter._hold_back(setup) and emitter._allowance == pytest.approx(setup)


def test_a_run_that_leaves_the_interpreter_idle_lets_the_client_be_set_up_at_once(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(openlineage, "time", clock)
    monkeypatch.setattr(openlineage._Emitter, "_work", lambda self: None)
    emitter = openlineage._Emitter(("test",), "flowkit", 1.0)
    emitter.wake = _Wake()
    emitter.begin(openlineage._RunHandle(None))

    def pause(timeout: float | None = None) -> bool:  # the run's tasks wait on I/O meanwhile
        clock.now += timeout or 0.0
        return False

    emitter.wake.wait = pause
    assert emitter._hold_back(0.3)  # one pause, which shows nobody else used the interpreter
    assert not emitter._hold_back(0.3)


def test_a_busy_short_run_sets_the_client_up_after_its_end_and_still_delivers_everything(receiver, monkeypatch,
                                                                                        tmp_path):
    (tmp_path / "notes.txt").write_text("checked by hand")
    made_while: list[float] = []
    make = openlineage.make_client

    def make_client() -> Any:
        made_while.append(time.time())
        return make()

    monkeypatch.setattr(openlineage, "make_client", make_client)
    monkeypatch.setattr(openlineage._Emitter, "_setup_cost", lambda self: 1e6)  # never earned while a run goes
    monkeypatch.setattr(openlineage, "_FREE_BELOW", 0.0)  # the run never counts as idle: it is busy throughout
    run = report.run(rows=3)
    events = delivered(receiver)
    assert len(events) == 2 * (len(run.task_runs) + 1)
    assert len(made_while) == 1 and made_while[0] >= run.ended  # made once, after the run ended


def test_a_configuration_the_client_refuses_is_said_once_and_lets_the_runs_go(monkeypatch, caplog, tmp_path):
    (tmp_path / "notes.txt").write_text("checked by hand")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "nosuch")  # the client cannot import such a transport
    begun = []
    begin = openlineage._Emitter.begin
    monkeypatch.setattr(openlineage._Emitter, "begin", lambda self, handle: (begun.append(handle), begin(self, handle)))
    with caplog.at_level(logging.ERROR, logger="flowkit"):
        first = report.run(rows=3)
        assert openlineage.flush(10)
        second = report.run(rows=4)  # a broken configuration adds no listener to later runs
    assert first.status == second.status == "completed"
    said = [r.getMessage() for r in caplog.records if "could not be set up" in r.getMessage()]
    assert len(said) == 1 and "nosuch" in said[0]
    (emitter,) = [e for e in openlineage._EMITTERS.values() if e.broken]
    assert len(begun) == 1 and begun[0].done.is_set()  # the first run had the listener, and was let go
    assert emitter.runs == [] and emitter.sent == 0  # nothing held for the run, nothing sent
