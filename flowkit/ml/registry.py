"""The model registry (``fk.registry``): versioned models with aliases, their history, and gates.

::

    @fk.task
    def train(df):
        model = fit(df)
        return fk.registry.register("churn", model, metrics={"auc": 0.91}).version

    fk.registry.promote("churn", 3, to="production", reason="beats 2 by 0.02", require_gate=True)
    model = fk.registry.load("churn@production")          # or "churn:3", or "churn" (the latest)
    fk.registry.get("churn", alias="production", as_of=datetime(2024, 3, 3))   # who held it then
    fk.registry.predictions("churn", since=yesterday)     # what `flowkit serve` answered (a DataFrame)
    fk.registry.rollback("churn", "production")           # back to the previous holder

Everything is kept in the metadata store (:mod:`flowkit.store.registry`): a
version points to the artifact holding the model and to the task run behind it,
so ``fk.lineage(version.artifact_id)`` leads back to the data, code and
parameters that made it. Every change records who (``$FLOWKIT_USER``, else the
login name) and when (the ``clock`` passed in, else the system's); alias moves
are an append-only history.

- **Inside a running task**, ``register(name, model)`` stores the model with the
  store's codec, links the version to that task run, and is idempotent for the
  task's cache key: a retried or re-executed task gets back the version it
  registered before.
- **From outside**, ``register(name, artifact_id)`` registers a value a run already
  stored, linked to the newest task run that produced it (a new version each time).
- Names may not hold ``/``, ``..``, ``@``, ``:`` or NUL; an alias is not all digits
  (``churn:3`` is a version). Every change is one transaction: a failed one leaves
  nothing behind.

Loading warns (:class:`ModelVersionWarning`) when a library the model was
registered with (scikit-learn, numpy, pandas, Python, flowkit) has another major
version in this process. Loaded models are memoized per process by artifact id.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import getpass
import json
import math
import numbers
import os
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flowkit.context import current_task
from flowkit.errors import ModelNotFoundError, RegistryError
from flowkit.ml.model import Model, ModelRef, Pin, parse_uri
from flowkit.ml.prediction_log import predictions
from flowkit.store import Store
from flowkit.store.protocols import ArtifactRow, Batch
from flowkit.store.registry import ANY, AliasRecord, ModelVersionRecord

__all__ = ["AliasChange", "Model", "ModelVersion", "ModelVersionWarning", "RegisteredModel", "aliases",
           "delete_alias", "get", "history", "load", "load_pinned", "models", "pin", "predictions", "promote", "register",
           "rollback", "set_alias", "store_of", "versions"]

#: The libraries whose versions a registered model records (distribution names).
LIBRARIES = ("scikit-learn", "numpy", "pandas", "flowkit")
_MAX_NAME = 200
_INLINE_MAX = 32 * 1024  # as a task's output: small models live in the metadata database


class ModelVersionWarning(UserWarning):
    """A model is loaded under another major version of a library than it was registered with."""


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One registered version of a model.

    Attributes:
        name, version: which model, and its version (1, 2, 3...).
        artifact_id: the artifact holding the model (``fk.lineage(artifact_id)`` leads back from it).
        run_id, task_run_id: the run and task run behind it (``None`` if registered from outside any run).
        metrics, params, tags: as registered.
        aliases: the aliases that point to it now.
        signature: ``{"inputs": [{"name": ..., "dtype": ...}, ...]}``, or ``None`` when unknown.
        library_versions: the versions of Python and the libraries it was registered with.
        created_at: when it was registered (epoch seconds); ``created_by``: who did.
    """

    name: str
    version: int
    artifact_id: str
    run_id: str | None
    task_run_id: str | None
    metrics: dict[str, float]
    params: dict[str, Any]
    tags: dict[str, Any]
    aliases: tuple[str, ...]
    signature: dict[str, Any] | None
    library_versions: dict[str, str]
    created_at: float
    created_by: str | None

    @property
    def uri(self) -> str:
        """``"name:version"``: what :func:`get`, :func:`load` and ``fk.Model`` take to name exactly this version."""
        return f"{self.name}:{self.version}"


@dataclass(frozen=True, slots=True)
class AliasChange:
    """One move of an alias (:func:`history`): to ``version`` (``None``: deleted) from ``previous``.

    ``when`` is epoch seconds, ``who`` the user, ``run_id`` the run the change was made from
    (a task that promoted), ``action`` one of ``set``, ``promote``, ``rollback``, ``delete``.
    """

    name: str
    alias: str
    version: int | None
    previous: int | None
    when: float
    who: str | None
    run_id: str | None
    reason: str | None
    action: str


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    """A model at a glance (:func:`models`): its version count, latest version, aliases, and times."""

    name: str
    versions: int
    latest: int
    aliases: dict[str, int]
    created_at: float
    updated_at: float


# --- helpers ---------------------------------------------------------------------------------------

def store_of(store: Store | None) -> Store:
    """``store``, or the default store (``$FLOWKIT_HOME``, else ``./.flowkit``)."""
    return store if store is not None else Store.open()


def _user() -> str:
    try:
        return os.environ.get("FLOWKIT_USER") or getpass.getuser()
    except (OSError, KeyError):  # no login name (some containers)
        return "unknown"


def _now(clock: Any) -> float:
    return clock.time() if clock is not None else time.time()


def _check_name(what: str, name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise RegistryError(f"a {what} name must be a non-empty string, not {name!r}")
    bad = next((s for s in ("/", "\\", "..", "\x00", "@", ":") if s in name), None)
    if bad is None and not name.strip("."):
        bad = name  # "." names nothing a person would recognise, and reads as a folder
    if bad is not None or name != name.strip() or len(name) > _MAX_NAME or not name.isprintable():
        shown = repr(bad) if bad is not None else "spaces around it, control characters or over 200 characters"
        raise RegistryError(f"{what} name {name[:60]!r} is not allowed ({shown}); use letters, digits, '-', '_' "
                            f"and '.' (for example 'churn-model')")
    return name


def _check_alias(alias: Any) -> str:
    _check_name("alias", alias)
    if alias.isdigit():
        raise RegistryError(f"alias {alias!r} is all digits, so it would read as a version ('churn:{alias}'); "
                            f"give it a name such as 'production' or 'v{alias}'")
    return alias  # type: ignore[no-any-return]


def _check_version(name: str, version: Any) -> int:
    if isinstance(version, bool) or not isinstance(version, numbers.Integral) or version < 1:
        raise RegistryError(f"model {name!r}: a version is a whole number 1, 2, 3..., not {version!r}")
    return int(version)


def _metrics(name: str, metrics: Mapping[str, Any] | None) -> dict[str, float]:
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise RegistryError(f"model {name!r}: metrics must be a dict of name -> number, not {type(metrics).__name__}")
    out = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or not key:
            raise RegistryError(f"model {name!r}: a metric name must be a non-empty string, not {key!r}")
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
            raise RegistryError(f"model {name!r}: metric {key!r} must be a finite number, not {value!r}")
        out[key] = float(value)
    return out


def _mapping(name: str, what: str, value: Mapping[str, Any] | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise RegistryError(f"model {name!r}: {what} must be a dict with string keys, not {value!r:.80}")
    return dict(value)


def epoch(value: dt.datetime | float | None, what: str) -> float | None:
    """A datetime or epoch seconds as epoch seconds (``None`` stays ``None``); ``what`` names it in the error."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.timestamp()  # a naive datetime is local time, as datetime.timestamp() reads it
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    raise RegistryError(f"{what} must be a datetime or epoch seconds, not {value!r}")


def _as_of(as_of: dt.datetime | float | None) -> float | None:
    return epoch(as_of, "as_of")


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


@functools.lru_cache(maxsize=1)
def _libraries() -> dict[str, str]:
    import platform
    from importlib import metadata

    found = {"python": platform.python_version()}
    for dist in LIBRARIES:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return found


def _major(version: str) -> str:
    return version.split(".", 1)[0]


def _warn_libraries(name: str, version: int, recorded: Mapping[str, str]) -> None:
    here = _libraries()
    for lib, then in recorded.items():
        now = here.get(lib)
        if now is not None and _major(now) != _major(then):
            warnings.warn(f"model {name}:{version} was registered with {lib} {then}, and this process has {lib} "
                          f"{now} (another major version): it may not load or predict the same. Retrain and "
                          f"register it again under {lib} {now}, or install {lib} {_major(then)}.x",
                          ModelVersionWarning, stacklevel=3)


def _signature(model: Any, input_example: Any) -> dict[str, Any] | None:
    if input_example is not None:
        columns, dtypes = getattr(input_example, "columns", None), getattr(input_example, "dtypes", None)
        if columns is None or dtypes is None:
            raise RegistryError(f"input_example must be a pandas DataFrame (its columns and dtypes make the "
                                f"signature), not a {type(input_example).__name__}")
        return {"inputs": [{"name": str(c), "dtype": str(d)} for c, d in zip(columns, dtypes)]}
    names = getattr(model, "feature_names_in_", None)
    if names is not None:  # scikit-learn fitted on a DataFrame
        return {"inputs": [{"name": str(n), "dtype": None} for n in names]}
    return None


def _public(r: ModelVersionRecord) -> ModelVersion:
    return ModelVersion(r.name, r.version, r.artifact_id, r.run_id, r.task_run_id, r.metrics, r.params, r.tags,
                        r.aliases, r.signature, r.library_versions, r.created, r.user)


def _change(r: AliasRecord) -> AliasChange:
    return AliasChange(r.name, r.alias, r.version, r.previous, r.time, r.user, r.run_id, r.reason, r.action)


# --- registering ---------------------------------------------------------------------------------

def _model_artifact(name: str, model: Any, files: Any, created: float) -> ArtifactRow:
    """Serialize ``model`` as a task output would be, writing a large one to its file; the artifact's row."""
    from flowkit.hashing import digest
    from flowkit.store.serializers import describe, dumps

    try:
        encoded = dumps(model)
    except Exception as exc:  # noqa: BLE001 - pickle and cloudpickle both failed: say which model
        kind = type(model)
        raise RegistryError(f"model {name!r}: the {kind.__module__}.{kind.__qualname__} cannot be serialized "
                            f"({type(exc).__name__}: {exc}); register an object that pickles (drop open files, "
                            f"locks or connections from it), nothing was recorded") from exc
    data = encoded.data
    d = digest(data)
    size = len(data) if isinstance(data, bytes) else data.nbytes
    info = describe(model)
    inline = bytes(data) if size <= _INLINE_MAX else None
    uri = None if inline is not None else str(files.write(d, data))
    columns = info.get("columns")
    return ArtifactRow(d, uri, encoded.serializer, info["type"], size,
                       json.dumps(columns) if columns is not None else None,
                       json.dumps(info["dtypes"]) if columns is not None else None, info.get("rows"), created, inline,
                       info.get("versions"))


def _existing_artifact(name: str, store: Store, artifact_id: str) -> tuple[str, str | None, str | None]:
    """(full id, run id, task run id) of a stored artifact being registered."""
    try:
        full = artifact_id if store.artifact(artifact_id) is not None else store.find_artifact(artifact_id)
    except KeyError as exc:
        raise RegistryError(f"model {name!r}: {exc.args[0]}. Pass the model object (inside a task), or the id "
                            f"of an artifact a run stored") from None
    record = store.artifact(full)
    if record is not None and record.removed is not None:
        raise RegistryError(f"model {name!r}: artifact {full[:12]} was removed ({record.removed_by}); rerun the "
                            f"flow that made it, then register it")
    step = store.db.newest_producers([full]).get(full)
    if step is not None:
        return full, step.run_id, step.id
    task_run_id = store.db.registered_producers([full]).get(full)
    return full, task_run_id.partition("/")[0] if task_run_id else None, task_run_id


def register(name: str, model_or_artifact_id: Any, metrics: Mapping[str, float] | None = None,
             params: Mapping[str, Any] | None = None, tags: Mapping[str, Any] | None = None,
             aliases: Sequence[str] = (), *, input_example: Any = None, store: Store | None = None,
             clock: Any = None) -> ModelVersion:
    """Register a new version of model ``name`` (versions count 1, 2, 3... per name).

    Args:
        name: the model's name (letters, digits, ``-``, ``_``, ``.``).
        model_or_artifact_id: the model object, or the id (or a unique prefix) of a stored artifact.
        metrics: numbers to compare versions by (``fk.checks.better_than`` reads them).
        params, tags: anything JSON can hold, for people and for search.
        aliases: aliases to point at the new version at once (``("staging",)``).
        input_example: a DataFrame whose columns and dtypes are the model's input signature.
        store: the store (default: the running task's, else the default store).
        clock: where the registration time is read (default: the system clock).

    Returns:
        The :class:`ModelVersion`. Inside a running task, registering again under the same
        name with the same cache key (a retry, a re-execution) returns the version registered
        the first time, and the model is linked to that task run; from outside, an artifact
        id is linked to the newest task run that produced it.

    Raises:
        RegistryError: a bad name, alias or metric, an unknown artifact id, or a model that
            cannot be serialized (nothing is recorded).
    """
    _check_name("model", name)
    names = [_check_alias(a) for a in ([aliases] if isinstance(aliases, str) else aliases)]
    numbers_ = _metrics(name, metrics)
    params_, tags_ = _mapping(name, "params", params), _mapping(name, "tags", tags)
    ctx = current_task()
    store = store or (ctx.store if ctx is not None else None) or Store.open()
    created = _now(clock)
    artifact: ArtifactRow | None = None
    cache_key = None
    if isinstance(model_or_artifact_id, str):
        artifact_id, run_id, task_run_id = _existing_artifact(name, store, model_or_artifact_id)
        signature = _signature(None, input_example) if input_example is not None else None
    else:
        run_id = ctx.run_id if ctx is not None else None
        task_run_id = ctx.task_run_id if ctx is not None else None
        cache_key = ctx.cache_key if ctx is not None else None
        if cache_key is not None:
            known = store.db.model_version_for_key(name, cache_key)
            if known is not None:  # a retry or a re-execution of the same task call
                if known.run_id != ctx.run_id and not _completed(store, known.run_id):
                    # The run that first registered it did not complete: this one is its producer now.
                    known = store.db.relink_model_version(name, known.version, ctx.run_id, ctx.task_run_id)
                return _public(known)
        signature = _signature(model_or_artifact_id, input_example)
        artifact = _model_artifact(name, model_or_artifact_id, store.files, created)
        artifact_id = artifact.id
    record = ModelVersionRecord(name, 0, artifact_id, run_id, task_run_id, cache_key, numbers_, params_, tags_,
                                signature, _libraries(), created, _user())
    stored, _ = store.db.add_model_version(record, names, artifact)
    signer = store.signer
    if artifact is not None and signer is not None:  # with signing on, its value loads only if signed
        batch = Batch()
        batch.signed_artifacts.append((signer.artifact(artifact.id, artifact.serializer), artifact.id))
        store.db.flush(batch)
    return _public(stored)


# --- finding and loading -------------------------------------------------------------------------

def _ref(name_or_uri: str, version: int | None, alias: str | None, stage: str | None) -> ModelRef:
    ref = parse_uri(name_or_uri)
    _check_name("model", ref.name)
    if stage is not None:
        if alias is not None and alias != stage:
            raise RegistryError(f"model {ref.name!r}: alias={alias!r} and stage={stage!r} disagree; a stage is an "
                                f"alias, give one of them")
        alias = stage
    if version is not None:
        version = _check_version(ref.name, version)
    if alias is not None:
        _check_alias(alias)
    asked = [x for x in (ref.version, ref.alias, version, alias) if x is not None]
    if len(set(map(str, asked))) > 1 or (version is not None and alias is not None):
        raise RegistryError(f"model {name_or_uri!r}: ask for one version or one alias, not "
                            f"{' and '.join(map(repr, asked))}")
    return ModelRef(ref.name, ref.version if version is None else version, ref.alias if alias is None else alias)


def _not_found(store: Store, ref: ModelRef, as_of: float | None) -> ModelNotFoundError:
    db = store.db
    known = db.model_versions(ref.name)
    when = f" at {_when(as_of)}" if as_of is not None else ""
    if not known:
        names = [m.name for m in db.models()]
        listed = f"; registered models: {', '.join(names[:10])}" if names else "; none is registered yet"
        return ModelNotFoundError(f"no model named {ref.name!r} in the store at {store.home}{listed}")
    if ref.version is not None:
        if any(v.version == ref.version for v in known):
            return ModelNotFoundError(f"model {ref.name}:{ref.version} was registered after{when}")
        return ModelNotFoundError(f"model {ref.name!r} has no version {ref.version}; its versions are "
                                  f"1 to {known[-1].version}")
    if ref.alias is not None:
        now = db.model_aliases(ref.name)
        listed = ", ".join(f"{a} -> {v}" for a, v in now.items()) or "none"
        return ModelNotFoundError(f"model {ref.name!r} had no alias {ref.alias!r}{when} (its aliases now: {listed}); "
                                  f"set one with fk.registry.promote({ref.name!r}, VERSION, to={ref.alias!r})")
    return ModelNotFoundError(f"model {ref.name!r} had no version yet{when}")


def _find(ref: ModelRef, as_of: float | None, store: Store) -> ModelVersionRecord:
    record = store.db.find_model_version(ref.name, ref.version, ref.alias, as_of)
    if record is None:
        raise _not_found(store, ref, as_of)
    return record


def get(name_or_uri: str, version: int | None = None, alias: str | None = None, stage: str | None = None,
        as_of: dt.datetime | float | None = None, *, store: Store | None = None) -> ModelVersion:
    """The registered version asked for (one metadata query).

    Args:
        name_or_uri: ``"churn"`` (the latest version), ``"churn:3"`` or ``"churn@production"``.
        version, alias: instead of writing them in the URI; ``stage`` is another word for ``alias``.
        as_of: a datetime (or epoch seconds): the version the alias pointed to then (or, without
            an alias, the latest version registered by then).
        store: the store (default: the default store).

    Raises:
        ModelNotFoundError: no such model, version or alias (the message says which exist).
        RegistryError: a malformed URI, or a version and an alias both given.
    """
    store = store_of(store)
    return _public(_find(_ref(name_or_uri, version, alias, stage), _as_of(as_of), store))


_MEMO: collections.OrderedDict[str, Any] = collections.OrderedDict()
_MEMO_SIZE = 16
_MEMO_LOCK = threading.Lock()


def load_pinned(pin: Pin) -> Any:
    """The model of a resolved version (memoized per process by artifact id), warning on library versions."""
    with _MEMO_LOCK:
        if pin.artifact_id in _MEMO:
            _MEMO.move_to_end(pin.artifact_id)
            return _MEMO[pin.artifact_id]
    _warn_libraries(pin.name, pin.version, pin.library_versions)
    store = store_of(pin.store)
    try:
        if pin.serializer is not None:  # what the resolution read: straight to the bytes
            value = _load_bytes(store, pin)
        else:  # its bytes are gone (or an older pin): the store says why
            value = store.load(pin.artifact_id)
    except KeyError as exc:
        raise RegistryError(f"model {pin.name}:{pin.version}: {exc.args[0]}") from None
    with _MEMO_LOCK:
        _MEMO[pin.artifact_id] = value
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)
    return value


def _load_bytes(store: Store, pin: Pin) -> Any:
    from flowkit.errors import CacheCorruptionError
    from flowkit.store.artifacts import DamagedArtifact
    from flowkit.store.serializers import load_artifact

    store.check_signed(pin.artifact_id, pin.serializer)
    try:
        return load_artifact(store.files, pin.artifact_id, pin.serializer, pin.inline, pin.library_versions)
    except DamagedArtifact as exc:
        raise CacheCorruptionError(f"model {pin.name}:{pin.version}: artifact {pin.artifact_id} is damaged ({exc}); "
                                   f"rerun the flow that made it to recompute it") from exc


def pin(name_or_uri: str, *, store: Store | None = None) -> Pin:
    """Resolve a URI now, to what loading it needs later (an ``fk.Model`` input keeps this)."""
    store = store_of(store)
    record = _find(_ref(name_or_uri, None, None, None), None, store)
    return Pin(record.name, record.version, record.artifact_id, store, record.library_versions, record.serializer,
               record.inline)


def load(name_or_uri: str, version: int | None = None, alias: str | None = None, stage: str | None = None,
         as_of: dt.datetime | float | None = None, *, store: Store | None = None) -> Any:
    """The model object of the version :func:`get` finds with the same arguments.

    Resolving is one metadata query; the model itself is loaded once per process (by artifact id).
    Warns (:class:`ModelVersionWarning`) when it was registered under another major version of
    Python, scikit-learn, numpy, pandas or flowkit.
    """
    store = store_of(store)
    record = _find(_ref(name_or_uri, version, alias, stage), _as_of(as_of), store)
    return load_pinned(Pin(record.name, record.version, record.artifact_id, store, record.library_versions,
                           record.serializer, record.inline))


def versions(name: str, *, store: Store | None = None) -> list[ModelVersion]:
    """Every version of a model, oldest first; :class:`~flowkit.ModelNotFoundError` if there is none."""
    store = store_of(store)
    found = store.db.model_versions(_check_name("model", name))
    if not found:
        raise _not_found(store, ModelRef(name, None, None), None)
    return [_public(r) for r in found]


def models(*, store: Store | None = None) -> list[RegisteredModel]:
    """Every registered model, by name."""
    db = store_of(store).db
    return [RegisteredModel(m.name, m.versions, m.latest, db.model_aliases(m.name), m.created, m.updated)
            for m in db.models()]


def aliases(name: str, *, store: Store | None = None) -> dict[str, int]:
    """A model's aliases now: alias -> version."""
    return store_of(store).db.model_aliases(_check_name("model", name))


# --- aliases -------------------------------------------------------------------------------------

def _move(name: str, alias: str, version: int | None, action: str, reason: str | None, store: Store | None,
          clock: Any, expect: Any = ANY) -> ModelVersion | None:
    """Move an alias (one transaction); the version it points to now (``None`` when deleted)."""
    store = store_of(store)
    target = None
    if version is not None:
        target = _find(ModelRef(name, version, None), None, store)
        if alias in target.aliases:
            return _public(target)  # already there: nothing to record
    ctx = current_task()
    moved = store.db.move_alias(name, alias, version, when=_now(clock), user=_user(), action=action, reason=reason,
                                run_id=ctx.run_id if ctx is not None else None, expect=expect)
    if moved is None:
        if version is None and expect is ANY:
            raise ModelNotFoundError(f"model {name!r} has no alias {alias!r} to delete")
        raise RegistryError(f"model {name!r}: alias {alias!r} was moved by someone else meanwhile; see "
                            f"fk.registry.history({name!r}, {alias!r}) and try again")
    return _public(_find(ModelRef(name, version, None), None, store)) if target is not None else None


def set_alias(name: str, alias: str, version: int, *, reason: str | None = None, store: Store | None = None,
              clock: Any = None) -> ModelVersion:
    """Point ``alias`` at ``version`` (recorded in the history); returns that version.

    Raises:
        ModelNotFoundError: the model or version does not exist.
        RegistryError: a bad alias name (all digits, ``/``...).
    """
    _check_name("model", name)
    moved = _move(name, _check_alias(alias), _check_version(name, version), "set", reason, store, clock)
    assert moved is not None
    return moved


def delete_alias(name: str, alias: str, *, reason: str | None = None, store: Store | None = None,
                 clock: Any = None) -> None:
    """Remove an alias (recorded in the history; :func:`rollback` can restore it)."""
    _move(_check_name("model", name), _check_alias(alias), None, "delete", reason, store, clock)


def _completed(store: Store, run_id: str | None) -> bool:
    run = store.db.get_run(run_id) if run_id is not None else None
    return run is not None and run.status == "completed"


def _gate(record: ModelVersionRecord, store: Store) -> None:
    """Refuse a version whose producing run failed or failed an error-severity check."""
    what = f"model {record.name}:{record.version}"
    if record.run_id is None:
        raise RegistryError(f"{what} cannot pass a gate: no run produced it (it was registered from outside a "
                            f"run), so there are no checks to go by. Register it from the task that trains it, or "
                            f"promote without require_gate")
    run = store.db.get_run(record.run_id)
    if run is None:
        raise RegistryError(f"{what} cannot pass a gate: its run {record.run_id[:12]} is not in the store at "
                            f"{store.home}")
    if run.status == "running":
        raise RegistryError(f"{what} cannot pass the gate yet: its run {run.id[:12]} of flow {run.flow!r} has not "
                            f"finished, so its checks are not all known; promote it once the run has completed "
                            f"(inside the flow, let the task's own checks gate what runs after them)")
    if run.status in ("failed", "cancelled"):
        raise RegistryError(f"{what} did not pass the gate: its run {run.id[:12]} of flow {run.flow!r} {run.status}"
                            + (f" ({run.error})" if run.error else ""))
    failed = [c for c in store.db.check_results([run.id]) if not c.passed and c.severity == "error"]
    if failed:
        names = ", ".join(f"{c.check} on {c.task}" for c in failed[:5])
        raise RegistryError(f"{what} did not pass the gate: run {run.id[:12]} failed {len(failed)} check(s): {names}")


def promote(name: str, version: int, to: str = "production", reason: str | None = None,
            require_gate: bool = False, *, store: Store | None = None, clock: Any = None) -> ModelVersion:
    """Move alias ``to`` to ``version``, recording the previous holder (so :func:`rollback` can return to it).

    Args:
        name, version: the model and the version the alias moves to.
        to: the alias (``"production"``, ``"staging"``, ...), created if new.
        reason: why, kept in the alias's history (``fk.registry.history``).
        require_gate: refuse the version unless the run that produced it completed without a
            failed error-severity check (a version no run produced, or whose run is still
            going, cannot pass).
        store, clock: the store (default ``$FLOWKIT_HOME``) and where the move's time comes from.

    Raises:
        ModelNotFoundError: no such model or version.
        RegistryError: the gate refused it, or a bad alias name.
    """
    _check_name("model", name)
    version = _check_version(name, version)
    _check_alias(to)
    if require_gate:
        store = store_of(store)
        _gate(_find(ModelRef(name, version, None), None, store), store)
    moved = _move(name, to, version, "promote", reason, store, clock)
    assert moved is not None
    return moved


def _holders(changes: Sequence[AliasRecord]) -> list[int | None]:
    """The stack of an alias's holders the history describes: a move pushes, a rollback pops."""
    stack: list[int | None] = []
    for change in changes:
        if change.action == "rollback":
            if stack:
                stack.pop()
        else:
            stack.append(change.version)
    return stack


def rollback(name: str, alias: str = "production", *, reason: str | None = None, store: Store | None = None,
             clock: Any = None) -> ModelVersion:
    """Point ``alias`` back at the version that held it before the last move (from the history).

    Rolling back again goes one holder further back; a deleted alias is restored.

    Raises:
        RegistryError: the alias never had a previous holder.
    """
    _check_name("model", name)
    _check_alias(alias)
    store = store_of(store)
    stack = _holders(store.db.alias_history(name, alias))
    if len(stack) < 2 or stack[-2] is None:
        raise RegistryError(f"model {name!r}: alias {alias!r} has no previous holder to roll back to; "
                            f"fk.registry.history({name!r}, {alias!r}) shows its moves")
    moved = _move(name, alias, stack[-2], "rollback", reason, store, clock, expect=stack[-1])
    assert moved is not None
    return moved


def history(name: str, alias: str | None = None, *, store: Store | None = None) -> list[AliasChange]:
    """Every move of a model's aliases (of one alias, if given), oldest first."""
    _check_name("model", name)
    if alias is not None:
        _check_alias(alias)
    return [_change(r) for r in store_of(store).db.alias_history(name, alias)]
