"""Artifact stores on a local disk or at an fsspec URL: content-addressed, atomic, verified when read.

Both classes implement :class:`~flowkit.store.protocols.ArtifactStore`.

A value's bytes live at ``<root>/<d[:2]>/<d>`` where ``d`` is the digest of
those bytes, so identical bytes are stored once and a path says nothing but
the content. A write goes to a temporary file in the same folder, is fsynced,
then renamed into place: a crash leaves either no file or a whole one. A read
checks the digest before anything is deserialized.
"""

from __future__ import annotations

import mmap
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from flowkit.errors import StoreError
from flowkit.faults import FAULTS, fault
from flowkit.hashing import Hasher, file_digest
from flowkit.hashing import digest as _digest
from flowkit.store.protocols import DamagedArtifact

__all__ = ["ArtifactFiles", "ArtifactWriteError", "DamagedArtifact", "FsspecArtifactFiles", "artifact_files"]

_TMP = ".tmp-"


class ArtifactWriteError(StoreError, OSError):
    """Bytes could not be written to the artifact store: a full disk, a read-only or lost mount.

    An :class:`OSError` too, as it was before it said where and how much space is left.

    Nothing half-written is left behind (the temporary file is removed). ``path``
    is where the bytes were going, ``errno`` the operating system's error number
    (``errno.ENOSPC`` for a full disk) and ``free`` the bytes free there, when known.
    """

    def __init__(self, path: Path | str, cause: OSError) -> None:
        available = _free_bytes(path)
        free = f"; {_size(available)} free there" if available is not None else ""
        super().__init__(f"cannot write {path}: {cause.strerror or cause}{free}")
        self.path = path
        self.errno = cause.errno
        self.free = available


def _free_bytes(path: Path | str) -> int | None:
    if not isinstance(path, Path):
        return None
    for folder in (path.parent, *path.parents):  # the nearest folder that exists
        try:
            return shutil.disk_usage(folder).free
        except OSError:
            continue
    return None


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} bytes"


def _touch(path: Path) -> bool:
    """Refresh an existing file's mtime (gc spares young files a run may not have recorded yet)."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _HashingWriter:
    """A file wrapper that digests and counts what is written through it.

    While a large value is written, the bytes already written are flushed to
    disk in the background (every ``sync_every`` bytes), so the final fsync
    only has the tail left and writing to disk overlaps serializing.
    """

    sync_every = 16 << 20

    def __init__(self, f: Any) -> None:
        self.f = f
        self.hasher = Hasher()
        self.size = 0
        self.closed = False
        self.error: OSError | None = None  # what the file system refused, as opposed to a serializer's own error
        self._unsynced = 0
        self._syncing: threading.Thread | None = None

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.hasher.update(view)
        n = view.nbytes
        self.size += n
        try:
            written = self.f.write(view)
        except OSError as exc:
            self.error = exc
            raise
        self._unsynced += n
        if self._unsynced >= self.sync_every and (self._syncing is None or not self._syncing.is_alive()):
            self.f.flush()
            self._unsynced = 0
            self._syncing = threading.Thread(target=os.fdatasync, args=(self.f.fileno(),), daemon=True)
            self._syncing.start()
        return written

    def finish(self) -> None:
        """Flush and fsync everything written."""
        if self._syncing is not None:
            self._syncing.join()
        self.f.flush()
        os.fsync(self.f.fileno())

    def flush(self) -> None:
        self.f.flush()

    def tell(self) -> int:
        return self.size

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True  # the real file is closed by its owner


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
        """Store ``data`` under its digest (nothing is written if it is already there).

        Raises:
            ArtifactWriteError: the file system refused (a full disk...); no temporary file is left.
        """
        final = self.path(digest)
        if _touch(final):
            return final
        tmp = final.parent / f"{_TMP}{uuid.uuid4().hex}"
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                if FAULTS:
                    fault("cache.after_temp_write")
                os.fsync(f.fileno())
            if FAULTS:
                fault("cache.after_fsync")
            os.replace(tmp, final)
            _fsync_folder(final.parent)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise ArtifactWriteError(final, exc) from exc
            raise
        if FAULTS:
            fault("cache.after_rename")
        return final

    def write_stream(self, produce: Callable[[Any], None]) -> tuple[str, int, Path]:
        """Store what ``produce(file)`` writes, hashing it on the way: (digest, size, path).

        The bytes go straight to a temporary file (no copy of a large value in
        memory), which is fsynced and then renamed to the path of its digest.

        Raises:
            ArtifactWriteError: the file system refused (a full disk...); no temporary file is left.
                An error of ``produce``'s own (a value the serializer cannot write) is raised as is.
        """
        tmp = self.root / f"{_TMP}{uuid.uuid4().hex}"
        writer: _HashingWriter | None = None
        producing = False
        final: Path = tmp
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                writer = _HashingWriter(f)
                try:
                    producing = True
                    produce(writer)
                    producing = False
                    if FAULTS:
                        fault("cache.after_temp_write")
                finally:
                    writer.finish()
            if FAULTS:
                fault("cache.after_fsync")
            digest, size = writer.hasher.hexdigest(), writer.size
            final = self.path(digest)
            final.parent.mkdir(parents=True, exist_ok=True)
            if _touch(final):
                tmp.unlink()
            else:
                os.replace(tmp, final)
                _fsync_folder(final.parent)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError) and not (producing and (writer is None or writer.error is None)):
                raise ArtifactWriteError(final, exc) from exc
            raise
        if FAULTS:
            fault("cache.after_rename")
        return digest, size, final

    def read(self, digest: str) -> memoryview:
        """The bytes of an artifact (memory-mapped), after checking them against the digest."""
        path = self.path(digest)
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                data = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)) if size else memoryview(b"")
        except FileNotFoundError:
            raise DamagedArtifact(path, digest, None) from None
        actual = _digest(data)
        if actual != digest:
            raise DamagedArtifact(path, digest, actual)
        return data

    def exists(self, digest: str) -> bool:
        """Whether a file is stored under this digest (its bytes unchecked)."""
        return self.path(digest).is_file()

    def verify(self, digest: str) -> bool:
        """Whether the file of this digest is there and its bytes match it."""
        try:
            return file_digest(self.path(digest)) == digest
        except FileNotFoundError:
            return False

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
                if not entry.name.startswith(_TMP):
                    yield entry.name, entry.stat().st_mtime

    def temporaries(self) -> Iterator[tuple[str, float]]:
        """The temporary files of writes that never finished (a killed process), with their modification times.

        Names are relative to the root; a write in progress has one too, fresh (gc spares young ones).
        """
        if not self.root.exists():
            return
        for folder in (self.root, *(p for p in self.root.iterdir() if p.is_dir())):
            for entry in os.scandir(folder):
                if entry.name.startswith(_TMP) and entry.is_file():
                    try:
                        mtime = entry.stat().st_mtime
                    except FileNotFoundError:  # its write just finished
                        continue
                    yield os.path.relpath(entry.path, self.root), mtime

    def remove_temporary(self, name: str) -> None:
        """Remove a temporary file :meth:`temporaries` listed (no error if it is gone)."""
        if not os.path.basename(name).startswith(_TMP):
            raise ValueError(f"{name!r} is not a temporary file of the artifact store")
        (self.root / name).unlink(missing_ok=True)


class FsspecArtifactFiles:
    """The artifact folder at an fsspec URL (``s3://bucket/flowkit``, ``gcs://...``, ``file:///shared``).

    Used when the workers of a remote cluster cannot see the client's disk.
    The same layout and rules apply: the name is the digest, a write goes to a
    temporary name first and is moved into place, a read is checked against
    the digest before anything is deserialized.
    """

    def __init__(self, url: str) -> None:
        import fsspec

        self.url = url.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.root = self.root.rstrip("/")

    def __reduce__(self) -> tuple[object, ...]:
        return (FsspecArtifactFiles, (self.url,))

    def _key(self, digest: str) -> str:
        return f"{self.root}/{digest[:2]}/{digest}"

    def path(self, digest: str) -> str:
        """The URL of the artifact with this digest."""
        return f"{self.url}/{digest[:2]}/{digest}"

    def _put(self, digest: str, write: Callable[[Any], None]) -> str:
        final = self._key(digest)
        if self.fs.exists(final):
            return self.path(digest)
        self.fs.makedirs(f"{self.root}/{digest[:2]}", exist_ok=True)
        tmp = f"{self.root}/{digest[:2]}/.tmp-{uuid.uuid4().hex}"
        try:
            with self.fs.open(tmp, "wb") as f:
                write(f)
            self.fs.mv(tmp, final)
        except BaseException as exc:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)
            if isinstance(exc, OSError):
                raise ArtifactWriteError(self.path(digest), exc) from exc
            raise
        return self.path(digest)

    def write(self, digest: str, data: bytes | memoryview) -> str:
        return self._put(digest, lambda f: f.write(data))

    def write_stream(self, produce: Callable[[Any], None]) -> tuple[str, int, str]:
        import io

        buffer = io.BytesIO()
        writer = _HashingWriter(buffer)
        writer.sync_every = 1 << 62  # a memory buffer has nothing to sync
        produce(writer)
        digest = writer.hasher.hexdigest()
        return digest, writer.size, self._put(digest, lambda f: f.write(buffer.getbuffer()))

    def read(self, digest: str) -> bytes:
        try:
            data = self.fs.cat_file(self._key(digest))
        except FileNotFoundError:
            raise DamagedArtifact(self.path(digest), digest, None) from None
        actual = _digest(data)
        if actual != digest:
            raise DamagedArtifact(self.path(digest), digest, actual)
        return data

    def exists(self, digest: str) -> bool:
        return bool(self.fs.exists(self._key(digest)))

    def verify(self, digest: str) -> bool:
        try:
            self.read(digest)
        except DamagedArtifact:
            return False
        return True

    def delete(self, digest: str) -> None:
        if self.fs.exists(self._key(digest)):
            self.fs.rm(self._key(digest))

    def digests(self) -> Iterator[tuple[str, float]]:
        if not self.fs.exists(self.root):
            return
        for info in self.fs.find(self.root, detail=True).values():
            name = info["name"].rsplit("/", 1)[-1]
            if name.startswith(_TMP):
                continue
            yield name, _mtime(info)

    def temporaries(self) -> Iterator[tuple[str, float]]:
        """The temporary files of writes that never finished, relative to the root, with their times."""
        if not self.fs.exists(self.root):
            return
        for info in self.fs.find(self.root, detail=True).values():
            if info["name"].rsplit("/", 1)[-1].startswith(_TMP):
                yield info["name"][len(self.root):].lstrip("/"), _mtime(info)

    def remove_temporary(self, name: str) -> None:
        if not name.rsplit("/", 1)[-1].startswith(_TMP):
            raise ValueError(f"{name!r} is not a temporary file of the artifact store")
        key = f"{self.root}/{name}"
        if self.fs.exists(key):
            self.fs.rm(key)


def _mtime(info: dict[str, Any]) -> float:
    import time

    mtime = info.get("mtime") or info.get("LastModified") or info.get("created") or time.time()
    return mtime.timestamp() if hasattr(mtime, "timestamp") else float(mtime)


def artifact_files(root: str | os.PathLike[str]) -> ArtifactFiles | FsspecArtifactFiles:
    """The artifact folder for a local path or an fsspec URL."""
    text = os.fspath(root)
    return FsspecArtifactFiles(text) if "://" in text else ArtifactFiles(text)
