"""``File``: a task input identified by its content rather than its name."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["File"]


class File:
    """An input file, identified by its content rather than its name.

    Pass ``fk.File("data/raw.csv")`` to a task: the cache key covers the
    file's bytes (with a size + modification-time shortcut recorded in the
    store, so an unchanged file is not read again), and the task receives a
    ``pathlib.Path``. Editing the file invalidates exactly the tasks that read it.
    """

    __slots__ = ("path",)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        if "\x00" in os.fspath(path):  # no file system has such a name; say so here, not in a cache-key error
            raise ValueError(f"fk.File({os.fspath(path)!r}): a file name cannot contain a NUL byte")
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"File({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, File) and other.path == self.path

    def __hash__(self) -> int:
        return hash(("flowkit.File", self.path))

    def __reduce__(self) -> tuple[Any, ...]:
        return (File, (str(self.path),))

    def __flowkit_token__(self, inputs: Any) -> Any:
        """Its token in a cache key: the digest of its bytes (by ``inputs``, the run's store, when given)."""
        from flowkit.hashing import Resolved

        return Resolved(self.__dask_tokenize__(inputs))

    def __dask_tokenize__(self, inputs: Any = None) -> tuple[str, str]:
        if inputs is not None:
            return ("flowkit.File", inputs.file_digest(self.path))
        from flowkit.hashing import file_digest

        return ("flowkit.File", file_digest(self.path))
