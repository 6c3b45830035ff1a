"""Serializers: how a value becomes the bytes of an artifact, chosen by type.

=============  ===========================  ====================================
name           used for                     format
=============  ===========================  ====================================
feather        pandas DataFrame (default)   Arrow IPC file (columnar, no code on load)
parquet        DataFrame, on request        Parquet (portable to other tools)
npy            numpy arrays (not object)    ``.npy`` without pickle
pickle         anything else                pickle protocol 5
cloudpickle    what pickle cannot do        cloudpickle (lambdas, local classes)
=============  ===========================  ====================================

A frame that Arrow cannot represent falls back to pickle, recorded as such.
pandas, numpy and pyarrow are imported only when a value of theirs shows up.
:func:`load_artifact` is the checked read: bytes against their digest, then :func:`loads`.

An artifact of anything but a plain scalar records the versions of Python and of the
libraries its loading may depend on (:data:`LIBRARIES`, those the writing process had
imported). When such an artifact fails to load in a process whose versions differ, the
error says so (:class:`~flowkit.errors.IncompatibleArtifactError`) instead of surfacing
from deep inside unpickling.
"""

from __future__ import annotations

import io
import json
import pickle
import platform
import sys
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from flowkit.errors import IncompatibleArtifactError
from flowkit.hashing import said_by_bytes
from flowkit.hashing import digest as _digest
from flowkit.store.artifacts import DamagedArtifact

__all__ = ["LIBRARIES", "Encoded", "describe", "dump_to", "dumps", "incompatible", "library_versions", "load_artifact",
           "loads", "streamable_size"]


class Encoded(NamedTuple):
    """A value's bytes and what was used to make them."""

    data: bytes | memoryview
    serializer: str


def _is_dataframe(value: Any) -> bool:
    # Exactly a DataFrame: a subclass would come back as a plain frame, so it is pickled instead.
    pd = sys.modules.get("pandas")
    return pd is not None and type(value) is pd.DataFrame


def _is_array(value: Any) -> bool:
    # Exactly an ndarray (not a masked array or a matrix), and not of Python objects.
    np = sys.modules.get("numpy")
    return np is not None and type(value) is np.ndarray and value.dtype.kind != "O"


def _feather_dumps(df: Any) -> memoryview:
    import pyarrow as pa
    import pyarrow.feather as feather

    sink = pa.BufferOutputStream()
    feather.write_feather(df, sink)
    return memoryview(sink.getvalue())


def _feather_loads(data: bytes | memoryview) -> Any:
    import pyarrow as pa
    import pyarrow.feather as feather

    return feather.read_table(pa.BufferReader(pa.py_buffer(data))).to_pandas()


def _parquet_dumps(df: Any) -> memoryview:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(df), sink)
    return memoryview(sink.getvalue())


def _parquet_loads(data: bytes | memoryview) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.read_table(pa.BufferReader(pa.py_buffer(data))).to_pandas()


def _npy_dumps(array: Any) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getbuffer()


def _npy_loads(data: bytes | memoryview) -> Any:
    import numpy as np

    return np.load(io.BytesIO(data), allow_pickle=False)


def _pickle_dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=5)


def _cloudpickle_dumps(value: Any) -> bytes:
    import cloudpickle

    return cloudpickle.dumps(value, protocol=5)


_DUMPS: dict[str, Callable[[Any], bytes | memoryview]] = {
    "feather": _feather_dumps,
    "parquet": _parquet_dumps,
    "npy": _npy_dumps,
    "pickle": _pickle_dumps,
    "cloudpickle": _cloudpickle_dumps,
}
_LOADS: dict[str, Callable[[bytes | memoryview], Any]] = {
    "feather": _feather_loads,
    "parquet": _parquet_loads,
    "npy": _npy_loads,
    "pickle": pickle.loads,
    "cloudpickle": pickle.loads,  # cloudpickle output loads with plain pickle
}


def _by_type(value: Any) -> str:
    if _is_dataframe(value):
        return "feather"
    if _is_array(value):
        return "npy"
    return "pickle"


#: What each serializer of one kind of value takes; any other value is pickled, so that it loads
#: back as what it was (``np.save`` would turn a list into an array).
TAKES = {"feather": ("pandas DataFrames", _is_dataframe), "parquet": ("pandas DataFrames", _is_dataframe),
         "npy": ("numpy arrays (not of objects)", _is_array)}


def dumps(value: Any, requested: str | None = None) -> Encoded:
    """Serialize ``value`` with ``requested`` (or by type), falling back to (cloud)pickle.

    A frame or array serializer requested for a value it does not take, or that cannot
    write it (a column Arrow cannot hold), gives way to pickle: the ``serializer`` of the
    result says what was used.
    """
    name = requested or _by_type(value)
    if name in TAKES and not TAKES[name][1](value):
        name = "pickle"
    if name in ("feather", "parquet", "npy"):
        try:
            return Encoded(_DUMPS[name](value), name)
        except Exception:  # noqa: BLE001 - e.g. mixed-type object columns: keep the value, use pickle
            name = "pickle"
    if name == "pickle":
        try:
            return Encoded(_pickle_dumps(value), "pickle")
        except Exception:  # noqa: BLE001 - lambdas, local classes...
            name = "cloudpickle"
    return Encoded(_cloudpickle_dumps(value), name)


def streamable_size(value: Any, requested: str | None) -> int | None:
    """The in-memory size of a value that can be written straight to a file, else ``None``."""
    name = requested or _by_type(value)
    if name in ("feather", "parquet") and _is_dataframe(value):
        return int(value.memory_usage(index=True, deep=False).sum())
    if name == "npy" and _is_array(value):
        return int(value.nbytes)
    return None


def dump_to(value: Any, requested: str | None, f: Any) -> str:
    """Serialize a frame or array straight into the file-like ``f``; return the serializer used."""
    name = requested or _by_type(value)
    if name == "feather":
        import pyarrow.feather as feather

        feather.write_feather(value, f)
    elif name == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pandas(value), f)
    elif name == "npy":
        import numpy as np

        np.save(f, value, allow_pickle=False)
    else:
        raise ValueError(f"serializer {name!r} does not stream")
    return name


def loads(data: bytes | memoryview, serializer: str) -> Any:
    """The value back from its bytes."""
    return _LOADS[serializer](data)


def load_artifact(files: Any, digest: str, serializer: str, inline: bytes | None,
                  versions: Mapping[str, str] | str | None = None) -> Any:
    """Load a cached value, checking its bytes against the digest first.

    ``versions`` are those recorded with the artifact (a mapping or its JSON text).

    Raises:
        DamagedArtifact: the bytes are missing or do not match the digest (nothing was deserialized).
        IncompatibleArtifactError: the bytes did not load, and ``versions`` differ from this process's.
    """
    if inline is not None:
        actual = _digest(inline)
        if actual != digest:
            raise DamagedArtifact(files.path(digest), digest, actual, inline=True)
        data: bytes = inline
    else:
        data = files.read(digest)
    try:
        return loads(data, serializer)
    except Exception as exc:
        problem = incompatible(digest, versions, exc)
        if problem is None:
            raise
        raise problem from exc


#: The libraries whose versions an artifact records, as (module, distribution): a pickle of their
#: objects, or their own formats (Arrow, ``.npy``), may not load under other versions.
LIBRARIES = (("numpy", "numpy"), ("pandas", "pandas"), ("pyarrow", "pyarrow"), ("sklearn", "scikit-learn"),
             ("cloudpickle", "cloudpickle"), ("scipy", "scipy"), ("torch", "torch"), ("xgboost", "xgboost"),
             ("lightgbm", "lightgbm"), ("polars", "polars"))
_PYTHON = platform.python_version()
_RECORDED: dict[tuple[str, ...], str] = {}  # the libraries imported -> their versions' JSON text


def _versions_text() -> str:
    """The JSON of Python's version and the imported :data:`LIBRARIES`' (cheap: memoized by what is imported)."""
    modules = sys.modules
    loaded = tuple(dist for module, dist in LIBRARIES if module in modules)
    text = _RECORDED.get(loaded)
    if text is None:
        found = {"python": _PYTHON}
        for module, dist in LIBRARIES:
            if dist in loaded:
                version = getattr(modules[module], "__version__", None)
                if isinstance(version, str):
                    found[dist] = version
        text = _RECORDED[loaded] = json.dumps(found, separators=(",", ":"))
    return text


def library_versions(names: Any = None) -> dict[str, str]:
    """This process's versions of Python and of the installed ``names`` (default: all :data:`LIBRARIES`)."""
    from importlib import metadata

    found = {"python": _PYTHON}
    for dist in names if names is not None else (d for _, d in LIBRARIES):
        if dist == "python":
            continue
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return found


def _spelled(versions: Mapping[str, str], names: list[str]) -> str:
    return " / ".join(f"{name} {versions.get(name, '(not installed)')}" for name in names)


def incompatible(artifact_id: str, recorded: Mapping[str, str] | str | None, error: BaseException,
                 task: str | None = None) -> IncompatibleArtifactError | None:
    """The error to raise for an artifact that failed to load with ``error``, if its recorded versions
    differ from this process's; ``None`` if they do not (or none were recorded): the failure is another one."""
    if isinstance(recorded, str):
        try:
            recorded = json.loads(recorded)
        except ValueError:
            return None
    if not recorded or not isinstance(recorded, Mapping):
        return None
    current = library_versions(list(recorded))
    differ = [name for name, version in recorded.items() if current.get(name) != version]
    if not differ:
        return None
    differ.sort(key=lambda name: name == "python")  # the libraries first: they are the likelier cause
    of = f" (the value of task {task!r})" if task else ""
    return IncompatibleArtifactError(
        f"artifact {artifact_id}{of} was written by {_spelled(recorded, differ)}; this process has "
        f"{_spelled(current, differ)}, and loading it failed: {type(error).__name__}: {error}. Install the "
        f"versions it was written with to load it, or rerun the flow that made it to recompute it under these",
        artifact_id, dict(recorded), current)


_PLAIN = frozenset({int, float, complex, str, bytes, bool, type(None)})


def describe(value: Any) -> dict[str, Any]:
    """What the store records about a value: its type and, for tables, shape and schema."""
    kind = type(value)
    info: dict[str, Any] = {"type": f"{kind.__module__}.{kind.__qualname__}"}
    if kind not in _PLAIN and not said_by_bytes(value):  # equal bytes, unequal values: no cutoff through it
        info["opaque"] = True
    if kind not in _PLAIN:
        info["versions"] = _versions_text()
    if _is_dataframe(value):
        info["columns"] = [str(c) for c in value.columns]
        info["dtypes"] = [str(d) for d in value.dtypes]
        info["rows"] = int(len(value))
    return info
