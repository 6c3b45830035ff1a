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
"""

from __future__ import annotations

import io
import pickle
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

from flowkit.hashing import said_by_bytes
from flowkit.hashing import digest as _digest
from flowkit.store.artifacts import DamagedArtifact

__all__ = ["Encoded", "describe", "dump_to", "dumps", "load_artifact", "loads", "streamable_size"]


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


def dumps(value: Any, requested: str | None = None) -> Encoded:
    """Serialize ``value`` with ``requested`` (or by type), falling back to (cloud)pickle."""
    name = requested or _by_type(value)
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


def load_artifact(files: Any, digest: str, serializer: str, inline: bytes | None) -> Any:
    """Load a cached value, checking its bytes against the digest first."""
    if inline is not None:
        actual = _digest(inline)
        if actual != digest:
            raise DamagedArtifact(files.path(digest), digest, actual, inline=True)
        data: bytes = inline
    else:
        data = files.read(digest)
    return loads(data, serializer)


_PLAIN = frozenset({int, float, complex, str, bytes, bool, type(None)})


def describe(value: Any) -> dict[str, Any]:
    """What the store records about a value: its type and, for tables, shape and schema."""
    kind = type(value)
    info: dict[str, Any] = {"type": f"{kind.__module__}.{kind.__qualname__}"}
    if kind not in _PLAIN and not said_by_bytes(value):  # equal bytes, unequal values: no cutoff through it
        info["opaque"] = True
    if _is_dataframe(value):
        info["columns"] = [str(c) for c in value.columns]
        info["dtypes"] = [str(d) for d in value.dtypes]
        info["rows"] = int(len(value))
    return info
