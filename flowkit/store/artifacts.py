"""Artifact files: content-addressed, written atomically, verified when read.

A value's bytes live at ``<root>/<d[:2]>/<d>`` where ``d`` is the digest of
those bytes, so identical bytes are stored once and a path says nothing but
the content. A write goes to a temporary file in the same folder, is fsynced,
then renamed into place: a crash leaves either no file or a whole one. A read
checks the digest before anything is deserialized.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from flowkit.hashing import digest as _digest

__all__ = ["ArtifactFiles", "DamagedArtifact"]


class DamagedArtifact(Exception):
    """The bytes on disk no longer match their digest (or the file is gone)."""

    def __init__(self, path: Path, expected: str, actual: str | None) -> None:
        what = "is missing" if actual is None else f"has digest {actual}"
        super().__init__(f"artifact file {path} {what}, expected {expected}")
        self.path = path
        self.expected = expected
        self.actual = actual


class ArtifactFiles:
    """The artifact folder of a store."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __reduce__(self) -> tuple[object, ...]:
        return (ArtifactFiles, (str(self.root),))

    def path(self, digest: str) -> Path:
        """Where the artifact with this digest lives."""
        return self.root / digest[:2] / digest

    def write(self, digest: str, data: bytes | memoryview) -> Path:
        """Store ``data`` under its digest (nothing is written if it is already there)."""
        final = self.path(digest)
        if final.exists():
            return final
        folder = final.parent
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".tmp-{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
        return final

    def read(self, digest: str) -> bytes:
        """The bytes of an artifact, after checking them against the digest."""
        path = self.path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise DamagedArtifact(path, digest, None) from None
        actual = _digest(data)
        if actual != digest:
            raise DamagedArtifact(path, digest, actual)
        return data

    def delete(self, digest: str) -> None:
        """Remove an artifact file (no error if it is gone)."""
        self.path(digest).unlink(missing_ok=True)

    def digests(self) -> Iterator[tuple[str, float]]:
        """Every stored digest with its file's modification time."""
        if not self.root.exists():
            return
        for folder in self.root.iterdir():
            if not folder.is_dir():
                continue
            for entry in os.scandir(folder):
                if not entry.name.startswith(".tmp-"):
                    yield entry.name, entry.stat().st_mtime
