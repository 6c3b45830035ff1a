"""OpenLineage run events built from flowkit's records: one builder for live runs and past ones.

:class:`EventBuilder` turns the records of one flow run (the run, its task runs, what
each consumed, the artifacts' records) into ``openlineage.client`` ``RunEvent``\\ s.
Both paths go through it, so they agree:

- live: :class:`LiveRun` follows a run's events (:mod:`flowkit.events`) in the
  exporter's background thread (:mod:`flowkit.export.openlineage`);
- past: :func:`past_run_events` reads a run back from the store (``flowkit lineage
  --openlineage RUN``).

Every flow run and every task run gets exactly one ``START`` and one terminal event
(``COMPLETE``, ``FAIL`` or ``ABORT``), whatever its status. A task run's two events
are sent when it ends, stamped with its own start and end times; one that has no
times (a cached result nobody loaded, a skipped or cancelled task) is sent when the
flow run ends, when its record is final. See ``docs/lineage.md`` for the mapping.

This module imports ``openlineage-python`` at its top; flowkit imports it only when
OpenLineage is configured or asked for.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime as _dt
import functools
import json
import os
import re
import subprocess
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import attr
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    DatasetFacet,
    RunFacet,
    data_quality_assertions_dataset,
    error_message_run,
    execution_parameters_run,
    job_type_job,
    nominal_time_run,
    output_statistics_output_dataset,
    parent_run,
    processing_engine_run,
    schema_dataset,
    source_code_job,
    source_code_location_job,
    test_run,
)
from openlineage.client.serde import Serde

from flowkit import __version__
from flowkit._worker import ArtifactInfo
from flowkit.events import RunFinished, RunStarted
from flowkit.records import CheckResult, TaskRun
from flowkit.recording import json_default, json_params
from flowkit.secrets import mask
from flowkit.store.protocols import InputRecord

__all__ = ["PRODUCER", "EventBuilder", "FlowRecord", "LiveRun", "past_run_events", "run_uuid", "task_run_uuid",
           "to_json"]

#: Who made the events (the spec asks for a URI naming the producer and its version).
PRODUCER = f"urn:flowkit:{__version__}"
#: Custom facets are described by the spec's generic facet definition (their fields: docs/lineage.md).
_CUSTOM_RUN_FACET = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunFacet"
_CUSTOM_DATASET_FACET = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetFacet"
#: What task-run ids (and run ids that are not UUIDs) are turned into UUIDs under.
_UUIDS = uuid.uuid5(uuid.NAMESPACE_URL, "urn:flowkit:openlineage")
#: The OpenLineage name of a local file's namespace (the spec's naming conventions).
FILE_NAMESPACE = "file"

_TERMINAL = {"completed": RunState.COMPLETE, "cached": RunState.COMPLETE, "failed": RunState.FAIL}


# --- custom facets ------------------------------------------------------------------------------

@attr.define
class FlowkitRunFacet(RunFacet):
    """``flowkit_run``: the flow run as flowkit knows it (its own id, what started it, where)."""

    runId: str  # noqa: N815
    trigger: str | None = None
    host: str | None = None
    user: str | None = None
    triggeredBy: str | None = None  # noqa: N815
    reason: Any = None

    @staticmethod
    def _get_schema() -> str:
        return _CUSTOM_RUN_FACET


@attr.define
class FlowkitTaskRunFacet(RunFacet):
    """``flowkit_task``: the task run as flowkit knows it (its node, status and attempts)."""

    task: str
    node: str
    status: str
    attempts: int
    cacheKey: str | None = None  # noqa: N815

    @staticmethod
    def _get_schema() -> str:
        return _CUSTOM_RUN_FACET


@attr.define
class FlowkitCacheRunFacet(RunFacet):
    """``flowkit_cache``: a result served from the cache, and the task run that computed it."""

    artifactId: str | None  # noqa: N815
    sourceTaskRun: str | None = None  # noqa: N815
    sourceRunId: str | None = None  # noqa: N815
    foundBy: str = "key"  # noqa: N815

    @staticmethod
    def _get_schema() -> str:
        return _CUSTOM_RUN_FACET


@attr.define
class FlowkitArtifactDatasetFacet(DatasetFacet):
    """``flowkit_artifact``: what a stored value is (its Python type)."""

    type: str | None  # noqa: A003

    @staticmethod
    def _get_schema() -> str:
        return _CUSTOM_DATASET_FACET


# --- records --------------------------------------------------------------------------------------

class Described(NamedTuple):
    """What the store records about an artifact that its dataset shows."""

    type: str | None
    size: int | None
    columns: list[str] | None
    dtypes: list[str] | None
    rows: int | None


class FlowRecord(NamedTuple):
    """A flow run as its events show it (``status`` ``"running"`` until it ended)."""

    id: str
    flow: str
    status: str
    params: dict[str, Any]
    started: float
    ended: float | None
    trigger: str | None
    error: str | None
    info: dict[str, Any]

    @classmethod
    def starting(cls, event: RunStarted) -> FlowRecord:
        """The record a run's ``RunStarted`` makes: parameters as the store keeps them (JSON, masked)."""
        return cls(event.run_id, event.flow, "running", json.loads(json_params(event.params)), event.started, None,
                   event.trigger, None, dict(event.context))

    @classmethod
    def of(cls, run: Any) -> FlowRecord:
        """The record of a :class:`~flowkit.Run` (read back from the store, or just finished)."""
        error = mask(str(run.error)) if run.error is not None else None
        return cls(run.id, run.flow, run.status, run.params, run.started, run.ended, run.trigger, error,
                   dict(run.info or {}))


def run_uuid(run_id: str) -> str:
    """The OpenLineage run id of a flowkit run id: itself when it is a UUID (the default), else one made from it."""
    try:
        return str(uuid.UUID(run_id))
    except ValueError:
        return str(uuid.uuid5(_UUIDS, run_id))


def task_run_uuid(task_run_id: str) -> str:
    """The OpenLineage run id of a task run (``"<run id>/<node>"``): the same in every export."""
    return str(uuid.uuid5(_UUIDS, task_run_id))


def _facet(kind: type[Any], **fields: Any) -> Any:
    """A facet made by flowkit (its ``_producer``), not by the client library."""
    return kind(**fields, producer=PRODUCER)


def _iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).isoformat()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=json_default)


def to_json(event: RunEvent) -> str:
    """An event as one line of JSON, as the client's transports serialize it."""
    return Serde.to_json(event)


# --- where the flow's code is -------------------------------------------------------------------

def _git(folder: str, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", folder, *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def _public_remote(url: str) -> str:
    """A remote URL without the user name or token some remotes carry (``https://user:token@host/...``)."""
    return _CREDENTIALS.sub("", url.strip())


def flow_source(flow_file: str | None, commit: str | None) -> tuple[str | None, dict[str, Any] | None]:
    """The flow file's text and, when it is in a git repository, where: its path there and the run's commit.

    The text is the file as it is when the events are built: for a live run, the code that
    ran; for a past run, the file now (the same, unless it was edited since: the commit says
    which version the run had).
    """
    if not flow_file:
        return None, None
    try:
        stamp = os.stat(flow_file).st_mtime_ns
    except OSError:
        stamp = None
    return _flow_source(flow_file, commit, stamp)


@functools.lru_cache(maxsize=64)
def _flow_source(flow_file: str, commit: str | None, stamp: int | None) -> tuple[str | None, dict[str, Any] | None]:
    try:
        text: str | None = Path(flow_file).read_text(encoding="utf-8") if stamp is not None else None
    except (OSError, UnicodeDecodeError):
        text = None
    folder = os.path.dirname(os.path.abspath(flow_file))
    top = _git(folder, "rev-parse", "--show-toplevel") if commit else None
    if top is None:
        return text, None
    top = top.strip()
    path = os.path.relpath(os.path.realpath(flow_file), os.path.realpath(top)).replace(os.sep, "/")
    remote = _git(top, "remote", "get-url", "origin")
    repo = _public_remote(remote) if remote else None
    url = Path(os.path.abspath(flow_file)).as_uri()
    web = re.match(r"^(?:https://|git@)(github\.com|gitlab\.com)[/:](.+?)(?:\.git)?$", repo or "")
    if web:
        url = f"https://{web.group(1)}/{web.group(2)}/blob/{commit}/{path}"
    return text, {"type": "git", "url": url, "repoUrl": repo, "path": path, "version": commit}


def file_paths(repr_text: str | None) -> list[str]:
    """The absolute paths of the ``fk.File`` inputs in a constant as lineage records it.

    Lineage shows a file input as ``Nested(File('/abs/path'))`` (in a list, ``Nested([File(...), ...])``);
    the text is parsed, never evaluated.
    """
    if not repr_text or "File(" not in repr_text:
        return []
    try:
        tree = ast.parse(repr_text, mode="eval")
    except (SyntaxError, ValueError):
        return []
    return [call.args[0].value for call in ast.walk(tree)
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "File"
            and len(call.args) == 1 and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str)
            and os.path.isabs(call.args[0].value)]


# --- the builder --------------------------------------------------------------------------------

class EventBuilder:
    """Builds the OpenLineage events of one flow run and its task runs.

    Args:
        namespace: the jobs' namespace (``OPENLINEAGE_NAMESPACE``, default ``"flowkit"``).
        run: the flow run.
        datasets: the namespace of the run's artifacts (its store), or ``None`` without a store.
        describe: an artifact's record by id (``None`` when unknown).
        flow_of: the flow of a run id (for the parent of a run another run triggered).
    """

    def __init__(self, namespace: str, run: FlowRecord, datasets: str | None,
                 describe: Callable[[str], Described | None], flow_of: Callable[[str], str | None]) -> None:
        self.namespace = namespace
        self.run = run
        self.datasets = datasets
        self.describe = describe
        self.flow_of = flow_of
        self.run_id = run_uuid(run.id)
        self._flow_job: dict[str, Any] | None = None

    # flow runs

    def flow_start(self) -> RunEvent:
        """The flow run's ``START``."""
        return self._flow_event(RunState.START, self.run.started)

    def flow_end(self, run: FlowRecord) -> RunEvent:
        """The flow run's terminal event: ``COMPLETE``, ``FAIL``, or ``ABORT`` (cancelled, crashed)."""
        self.run = run._replace(params=self.run.params, info=self.run.info)  # as the start showed them (masked)
        kind = {"completed": RunState.COMPLETE, "failed": RunState.FAIL}.get(run.status, RunState.ABORT)
        return self._flow_event(kind, run.ended if run.ended is not None else run.started)

    def _flow_event(self, kind: RunState, when: float) -> RunEvent:
        run = self.run
        info = run.info
        facets: dict[str, Any] = {
            "processing_engine": _facet(processing_engine_run.ProcessingEngineRunFacet, version=__version__,
                                        name="flowkit", openlineageAdapterVersion=__version__),
            "flowkit_run": _facet(FlowkitRunFacet, runId=run.id, trigger=run.trigger, host=info.get("host"),
                                  user=info.get("user"), triggeredBy=info.get("triggered_by"),
                                  reason=info.get("trigger_reason")),
        }
        if run.params:
            facets["executionParameters"] = _facet(
                execution_parameters_run.ExecutionParametersRunFacet,
                parameters=[execution_parameters_run.ExecutionParameter(key=k, value=_text(v))
                            for k, v in run.params.items()])
        if info.get("scheduled") is not None:
            facets["nominalTime"] = _facet(nominal_time_run.NominalTimeRunFacet,
                                           nominalStartTime=_iso(info["scheduled"]))
        parent = info.get("triggered_by")
        parent_flow = self.flow_of(parent) if parent else None
        if parent and parent_flow:
            facets["parent"] = self._parent(run_uuid(parent), parent_flow)
        if kind is not RunState.START and run.error:
            facets["errorMessage"] = _facet(error_message_run.ErrorMessageRunFacet, message=run.error,
                                            programmingLanguage="python")
        return RunEvent(eventType=kind, eventTime=_iso(when), producer=PRODUCER,
                        run=Run(runId=self.run_id, facets=facets),
                        job=Job(namespace=self.namespace, name=run.flow, facets=self._flow_job_facets()))

    def _flow_job_facets(self) -> dict[str, Any]:
        if self._flow_job is None:
            facets: dict[str, Any] = {"jobType": _job_type("FLOW")}
            source, location = flow_source(self.run.info.get("flow_file"), self.run.info.get("git_commit"))
            if source is not None:
                facets["sourceCode"] = _facet(source_code_job.SourceCodeJobFacet, language="python",
                                              sourceCode=source)
            if location is not None:
                facets["sourceCodeLocation"] = _facet(source_code_location_job.SourceCodeLocationJobFacet, **location)
            self._flow_job = facets
        return self._flow_job

    def _parent(self, run_id: str, flow: str) -> Any:
        return _facet(
            parent_run.ParentRunFacet,
            run=parent_run.Run(runId=run_id), job=parent_run.Job(namespace=self.namespace, name=flow),
            root=parent_run.Root(run=parent_run.RootRun(runId=run_id),
                                 job=parent_run.RootJob(namespace=self.namespace, name=flow)))

    # task runs

    def task_events(self, tr: TaskRun, inputs: Sequence[InputRecord] = ()) -> tuple[RunEvent, RunEvent]:
        """A task run's ``START`` and its terminal event.

        ``completed`` and ``cached`` end ``COMPLETE`` (a cached one with the ``flowkit_cache``
        facet), ``failed`` ends ``FAIL`` with the error; ``skipped``, ``cancelled`` and
        ``unneeded`` (it did not run) end ``ABORT``. ``inputs`` are what it consumed.
        """
        run = self.run
        started = tr.started if tr.started is not None else tr.ended
        if started is None:  # it never ran: cached at planning, or skipped at the run's end
            started = run.started if tr.status == "cached" else (run.ended or run.started)
        ended = tr.ended if tr.ended is not None else started
        facets: dict[str, Any] = {
            "parent": self._parent(self.run_id, run.flow),
            "flowkit_task": _facet(FlowkitTaskRunFacet, task=tr.name, node=tr.node, status=tr.status,
                                   attempts=tr.attempts, cacheKey=tr.cache_key),
        }
        job = Job(namespace=self.namespace, name=f"{run.flow}.{tr.node}", facets={"jobType": _job_type("TASK")})
        run_id = task_run_uuid(tr.id)
        read = self._inputs(inputs)
        start = RunEvent(eventType=RunState.START, eventTime=_iso(started), producer=PRODUCER,
                         run=Run(runId=run_id, facets=dict(facets)), job=job, inputs=read)
        outputs: list[OutputDataset] = []
        if tr.status == "cached":
            facets["flowkit_cache"] = _facet(
                FlowkitCacheRunFacet, artifactId=tr.artifact_id, sourceTaskRun=tr.source,
                sourceRunId=task_run_uuid(tr.source) if tr.source else None, foundBy="content" if inputs else "key")
        elif tr.artifact_id is not None and self.datasets is not None:
            outputs.append(self._output(tr.artifact_id, tr.checks))
        if tr.status == "failed":
            facets["errorMessage"] = _facet(
                error_message_run.ErrorMessageRunFacet, message=mask(tr.error) or "failed",
                programmingLanguage="python", stackTrace=mask(tr.traceback))
        if tr.checks and not outputs:  # checks that failed the task: there is no stored value to attach them to
            facets["test"] = _facet(test_run.TestRunFacet, tests=[
                test_run.TestExecution(name=c.check, status="pass" if c.passed else "fail", severity=c.severity,
                                       type=_kind(c.check), expected=_maybe(c.threshold), actual=_maybe(c.observed),
                                       description=mask(c.message)) for c in tr.checks])
        end = RunEvent(eventType=_TERMINAL.get(tr.status, RunState.ABORT), eventTime=_iso(ended), producer=PRODUCER,
                       run=Run(runId=run_id, facets=facets), job=job, inputs=read, outputs=outputs)
        return start, end

    def _inputs(self, inputs: Sequence[InputRecord]) -> list[InputDataset]:
        out: dict[tuple[str, str], InputDataset] = {}
        for record in inputs:
            if record.kind == "artifact" and record.artifact_id and self.datasets is not None:
                key = (self.datasets, record.artifact_id)
                if key not in out:
                    out[key] = InputDataset(namespace=self.datasets, name=record.artifact_id,
                                            facets=self._dataset_facets(record.artifact_id))
            elif record.kind == "param":
                for path in file_paths(record.repr):
                    if (FILE_NAMESPACE, path) not in out:
                        out[FILE_NAMESPACE, path] = InputDataset(namespace=FILE_NAMESPACE, name=path)
        return list(out.values())

    def _dataset_facets(self, artifact_id: str) -> dict[str, Any]:
        d = self.describe(artifact_id)
        if d is None:
            return {}
        facets: dict[str, Any] = {"flowkit_artifact": _facet(FlowkitArtifactDatasetFacet, type=d.type)}
        if d.columns is not None:
            dtypes = d.dtypes or [None] * len(d.columns)
            facets["schema"] = _facet(schema_dataset.SchemaDatasetFacet, fields=[
                schema_dataset.SchemaDatasetFacetFields(name=c, type=t, ordinal_position=i)
                for i, (c, t) in enumerate(zip(d.columns, dtypes), 1)])
        return facets

    def _output(self, artifact_id: str, checks: Sequence[CheckResult]) -> OutputDataset:
        assert self.datasets is not None
        facets = self._dataset_facets(artifact_id)
        if checks:
            facets["dataQualityAssertions"] = _facet(
                data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet,
                assertions=[data_quality_assertions_dataset.Assertion(
                    assertion=_kind(c.check), success=bool(c.passed), severity=c.severity, name=c.check,
                    expected=_maybe(c.threshold), actual=_maybe(c.observed),
                    params={k: v for k, v in (("message", mask(c.message)), ("baseline", c.baseline)) if v} or None)
                    for c in checks])
        d = self.describe(artifact_id)
        output_facets = {}
        if d is not None and (d.rows is not None or d.size is not None):
            output_facets["outputStatistics"] = _facet(
                output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet, rowCount=d.rows, size=d.size)
        return OutputDataset(namespace=self.datasets, name=artifact_id, facets=facets, outputFacets=output_facets)


def _job_type(kind: str) -> Any:
    return _facet(job_type_job.JobTypeJobFacet, processingType="BATCH", integration="FLOWKIT", jobType=kind)


def _kind(check: str) -> str:
    """A check's kind, ``no_nulls`` for ``no_nulls(['age'])``: the spec's assertion classification."""
    return check.split("(", 1)[0] or check


def _maybe(value: Any) -> str | None:
    return None if value is None else mask(_text(value))


# --- where the records come from ------------------------------------------------------------------

def dataset_namespace(store: Any, host: str | None) -> str | None:
    """The namespace of a store's artifacts: its artifact root as a URL (``file://<host>/<path>`` when local)."""
    if store is None:
        return None
    root = str(store.artifacts_root)
    if "://" in root:
        return _public_remote(root).rstrip("/")
    return f"file://{host or ''}{Path(os.path.abspath(root)).as_posix()}"


def described(record: Any) -> Described | None:
    """The :class:`Described` of an artifact record (:class:`~flowkit.store.protocols.ArtifactRecord`)."""
    if record is None:
        return None
    return Described(record.type, record.size, record.columns, record.dtypes, record.rows)


def _store_lookups(store: Any) -> tuple[Callable[[str], Described | None], Callable[[str], str | None]]:
    @functools.lru_cache(maxsize=4096)
    def describe(artifact_id: str) -> Described | None:
        return described(store.artifact(artifact_id)) if store is not None else None

    @functools.lru_cache(maxsize=64)
    def flow_of(run_id: str) -> str | None:
        record = store.db.get_run(run_id) if store is not None else None
        return record.flow if record is not None else None

    return describe, flow_of


class LiveRun:
    """Follows one run's events and says which OpenLineage events each one makes (the exporter's thread)."""

    def __init__(self, namespace: str, store: Any) -> None:
        self.namespace = namespace
        self.store = store
        self.known: dict[str, Described] = {}  # artifacts this run stored (not yet in the store, maybe)
        self.inputs: dict[str, list[InputRecord]] = {}
        self.pending: list[InputRecord] = []  # the inputs of the task run queued next
        self.sent: set[str] = set()
        self.builder: EventBuilder | None = None
        self._describe, self._flow_of = _store_lookups(store)

    def describe(self, artifact_id: str) -> Described | None:
        return self.known.get(artifact_id) or self._describe(artifact_id)

    def events(self, event: Any) -> list[RunEvent]:
        """The OpenLineage events an item of the run's queue makes (often none).

        What the listener queues (``OpenLineageListener``): ``RunStarted``; per task run, the
        artifact it stored when the run had not described it yet (an ``ArtifactInfo``), each
        of its lineage rows (plain tuples), then the ``TaskRun`` itself; ``RunFinished``.
        """
        kind = type(event)
        if kind is TaskRun:
            tr, inputs = event, self.pending
            self.pending = []
            if tr.started is None and tr.ended is None:  # sent at the end, from the run's final record
                if inputs:
                    self.inputs[tr.node] = inputs
                return []
            assert self.builder is not None
            self.sent.add(tr.node)
            return list(self.builder.task_events(tr, inputs))
        if kind is tuple:  # a lineage row of the next task run: (run, node, position, kind, artifact, name, token, shown)
            self.pending.append(InputRecord(event[3], event[4], event[5], event[6], event[7]))
            return []
        if kind is ArtifactInfo:
            d = event.description
            self.known[event.digest] = Described(d.get("type"), event.size, d.get("columns"), d.get("dtypes"),
                                                 d.get("rows"))
            return []
        if kind is RunStarted:
            record = FlowRecord.starting(event)
            host = record.info.get("host")
            self.builder = EventBuilder(self.namespace, record, dataset_namespace(self.store, host), self.describe,
                                        self._flow_of)
            return [self.builder.flow_start()]
        if kind is RunFinished:
            assert self.builder is not None
            run = event.run
            out: list[RunEvent] = []
            for tr in run.task_runs:
                if tr.node not in self.sent:
                    out.extend(self.builder.task_events(tr, self.inputs.get(tr.node, ())))
            out.append(self.builder.flow_end(FlowRecord.of(run)))
            return out
        return []


def past_run_events(run_id: str, store: Any, namespace: str = "flowkit") -> list[RunEvent]:
    """The events of a recorded run, as its live export sent them (a unique prefix of the run id is enough).

    The task runs that have times come in the order they were recorded, then those without
    (which a live run sends at its end), then the flow run's end; a run still going has no
    end yet, nor its untimed task runs.

    Raises:
        KeyError: no such run (or an ambiguous prefix).
    """
    run = store.run(run_id)
    describe, flow_of = _store_lookups(store)
    record = FlowRecord.of(run)
    builder = EventBuilder(namespace, record._replace(status="running", ended=None, error=None),
                           dataset_namespace(store, run.info.get("host")), describe, flow_of)
    checks: dict[str, list[CheckResult]] = {}
    for c in store.db.check_results([run.id]):
        if c.source is None:  # a cached task run shows its source's checks: they belong to the source's events
            checks.setdefault(c.node, []).append(CheckResult(c.check, c.passed, c.severity, c.observed, c.threshold,
                                                             c.baseline, c.message, c.sample))
    task_runs = [dataclasses.replace(tr, checks=tuple(checks.get(tr.node, ()))) for tr in run.task_runs]
    ended = run.status != "running"
    timed = [tr for tr in task_runs if tr.started is not None or tr.ended is not None]
    untimed = [tr for tr in task_runs if tr.started is None and tr.ended is None] if ended else []
    events = [builder.flow_start()]
    inputs = store.db.run_inputs(run.id)
    for tr in timed + untimed:
        events.extend(builder.task_events(tr, inputs.get(tr.node, [])))
    if ended:
        events.append(builder.flow_end(record))
    return events
