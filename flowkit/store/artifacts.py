"""Artifact stores on a local disk or at an fsspec URL: content-addressed, atomic, verified when read.

Both classes implement :class:`~flowkit.store.protocols.ArtifactStore`.

A value's bytes live at ``<root>/<d[:2]>/<d>`` where ``d`` is the digest of
those bytes, so identical bytes are stored once and a path says nothing but
the content. A write goes to a temporary file in the same folder, is fsynced,
then renamed into place: a crash leaves either no file or a whole one. A read
checks the digest before anything is deserialized.
"""

from __future__ import annotations

import contextlib
import io
import mmap
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flowkit.errors import StoreError
from flowkit.faults import FAULTS, fault
from flowkit.hashing import Hasher, file_digest
from flowkit.hashing import digest as _digest
from flowkit.store.protocols import DamagedArtifact

__all__ = ["ArtifactFiles", "ArtifactWriteError", "BadArtifactId", "DamagedArtifact", "FsspecArtifactFiles",
           "artifact_files", "check_digest", "check_url", "describe_error"]

_TMP = ".tmp-"
_HEX = frozenset("0123456789abcdef")


class BadArtifactId(StoreError, ValueError):
    """A name given as an artifact id that is no digest: it never becomes a path."""


def check_digest(digest: object) -> str:
    """``digest``, if it is an artifact id (a lowercase hexadecimal digest); else :class:`BadArtifactId`.

    An id becomes the path of a file (``<d[:2]>/<d>``), so ``../x``, ``/etc/passwd``, names
    with ``/`` or NUL bytes and overlong names are refused before any path is made of them.
    """
    if type(digest) is not str or not 16 <= len(digest) <= 128 or not _HEX.issuperset(digest):
        shown = repr(digest)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise BadArtifactId(f"{shown} is not an artifact id: an id is the hexadecimal digest of the value's bytes "
                            f"(16 to 128 characters 0-9a-f), as `flowkit artifacts ls` lists them")
    return digest


class ArtifactWriteError(StoreError, OSError):
    """Bytes could not be written to the artifact store: a full disk, a read-only or lost mount,
    an object store that refused or could not be reached.

    An :class:`OSError` too, as it was before it said where and how much space is left.

    Nothing half-written is left under the artifact's name. ``path`` is where the
    bytes were going, ``errno`` the operating system's error number (``errno.ENOSPC``
    for a full disk; ``None`` when the cause is no OS error), ``free`` the bytes free
    there when known, and ``hint`` what to do about it.
    """

    def __init__(self, path: Path | str, cause: BaseException, hint: str = "") -> None:
        available = _free_bytes(path)
        free = f"; {_size(available)} free there" if available is not None else ""
        reason = (cause.strerror if isinstance(cause, OSError) else None) or describe_error(cause)
        super().__init__(f"cannot write {path}: {reason}{free}")
        self.path = path
        self.errno = getattr(cause, "errno", None)
        self.free = available
        self.hint = hint or ("Free some space (or point FLOWKIT_HOME / FLOWKIT_ARTIFACTS elsewhere)"
                             if isinstance(path, Path) else "Check FLOWKIT_ARTIFACTS and the store it names")


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
        """Where the artifact with this digest lives (:class:`BadArtifactId` for a name that is no digest)."""
        check_digest(digest)
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
        parts = Path(name).parts
        if not os.path.basename(name).startswith(_TMP) or os.path.isabs(name) or ".." in parts or len(parts) > 2:
            raise ValueError(f"{name!r} is not a temporary file of the artifact store")
        (self.root / name).unlink(missing_ok=True)


class FsspecArtifactFiles:
    """The artifact folder at an fsspec URL (``gcs://bucket/flowkit``, ``file:///shared``, ``memory://x``).

    Used when the workers of a remote cluster cannot see the client's disk.
    The same layout and rules apply: the name is the digest, a write goes to a
    temporary name first, its size is checked, and then it is moved into place;
    a read is checked against the digest before anything is deserialized.
    ``s3://`` URLs get :class:`flowkit.store.s3.S3ArtifactFiles`, which publishes
    without a server-side copy (:func:`artifact_files` picks it).

    Raises:
        StoreError: the URL is not one fsspec can open (``s4://x``), it carries credentials
            (they belong in the environment, never in a URL that is recorded), or the backend's
            package is not installed; later, any operation the backend refuses (naming the URL).
    """

    def __init__(self, url: str) -> None:
        import fsspec

        self.url = check_url(url).rstrip("/")
        try:
            self.fs, root = fsspec.core.url_to_fs(self.url, **self._options())
        except (ImportError, ValueError) as exc:  # an unknown protocol, or its package is missing
            raise StoreError(f"cannot open the artifact store at {self.url}: {exc}. Set FLOWKIT_ARTIFACTS (or "
                             f"Store(artifacts=...)) to a folder or a URL fsspec can open, e.g. "
                             f"s3://bucket/prefix (pip install 'flowkit[s3]')") from exc
        self.root = root.rstrip("/")

    def _options(self) -> dict[str, Any]:
        """Storage options for the filesystem (backends that need some override this)."""
        return {}

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.url,))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def _key(self, digest: str) -> str:
        check_digest(digest)
        return f"{self.root}/{digest[:2]}/{digest}"

    def path(self, digest: str) -> str:
        """The URL of the artifact with this digest (:class:`BadArtifactId` for a name that is no digest)."""
        check_digest(digest)
        return f"{self.url}/{digest[:2]}/{digest}"

    @contextlib.contextmanager
    def _failing(self, doing: str) -> Iterator[None]:
        """Turn what the backend raises while ``doing`` into a :class:`StoreError` naming the URL."""
        try:
            yield
        except (DamagedArtifact, StoreError):
            raise
        except Exception as exc:  # noqa: BLE001 - each backend raises its own kinds; all read the same here
            hint = self._hint(exc)
            raise StoreError(f"the artifact store at {self.url} failed while {doing}: {describe_error(exc)}"
                             f"{'. ' + hint if hint else ''}") from exc

    def _hint(self, exc: BaseException) -> str:
        """What to do about an error of this backend: a phrase to follow the error, or nothing."""
        return ""

    def write(self, digest: str, data: bytes | memoryview) -> str:
        """Store ``data`` under ``digest`` (nothing is written if it is already there).

        Raises:
            ArtifactWriteError: the backend refused or failed; nothing is left under the final name.
        """
        return self._store(digest, memoryview(data).cast("B"))

    def write_stream(self, produce: Callable[[Any], None]) -> tuple[str, int, str]:
        """Store what ``produce(file)`` writes, digesting on the way: ``(digest, size, url)``.

        The bytes are gathered in memory first: the final name is their digest, and moving
        a temporary object into place is a copy on object stores, which costs as much as the
        upload. An error of ``produce``'s own is raised as is, and nothing is written.
        """
        buffer = io.BytesIO()
        writer = _HashingWriter(buffer)
        writer.sync_every = 1 << 62  # a memory buffer has nothing to sync
        produce(writer)
        digest = writer.hasher.hexdigest()
        return digest, writer.size, self._store(digest, buffer.getbuffer())

    def _store(self, digest: str, data: memoryview) -> str:
        final = self._key(digest)
        try:
            if self.fs.exists(final):
                return self.path(digest)
            self._publish(final, data)
        except ArtifactWriteError:
            raise
        except Exception as exc:  # noqa: BLE001 - the backend's own errors, whatever their kind
            raise ArtifactWriteError(self.path(digest), exc, self._hint(exc)) from exc
        if FAULTS:
            fault("cache.after_rename")
        return self.path(digest)

    def _publish(self, final: str, data: memoryview) -> None:
        """Write ``data`` to a temporary name beside ``final``, check its size there, move it into place."""
        folder = final.rsplit("/", 1)[0]
        self.fs.makedirs(folder, exist_ok=True)
        tmp = f"{folder}/{_TMP}{uuid.uuid4().hex}"
        try:
            with self.fs.open(tmp, "wb") as f:
                f.write(data)
            if FAULTS:
                fault("cache.after_temp_write")
            landed = self.fs.info(tmp)["size"]
            if landed != data.nbytes:
                raise OSError(f"{landed} bytes landed in {tmp}, {data.nbytes} were written")
            if FAULTS:
                fault("cache.after_fsync")
            self.fs.mv(tmp, final)
        except BaseException:
            with contextlib.suppress(Exception):
                self.fs.rm(tmp)
            raise

    def _fetch(self, key: str) -> bytes | memoryview:
        """The stored bytes under ``key`` (a backend may fetch them its own way)."""
        return self.fs.cat_file(key)

    def read(self, digest: str) -> bytes | memoryview:
        """The bytes of an artifact, after checking them against the digest."""
        with self._failing(f"reading {self.path(digest)}"):
            try:
                data = self._fetch(self._key(digest))
            except FileNotFoundError:
                raise DamagedArtifact(self.path(digest), digest, None) from None
        actual = _digest(data)
        if actual != digest:
            raise DamagedArtifact(self.path(digest), digest, actual)
        return data

    def exists(self, digest: str) -> bool:
        """Whether an object is stored under this digest (its bytes unchecked)."""
        with self._failing(f"looking for {self.path(digest)}"):
            return bool(self.fs.exists(self._key(digest)))

    def verify(self, digest: str) -> bool:
        """Whether the object of this digest is there and its bytes match it."""
        try:
            self.read(digest)
        except DamagedArtifact:
            return False
        return True

    def delete(self, digest: str) -> None:
        """Remove an artifact (no error if it is gone)."""
        with self._failing(f"removing {self.path(digest)}"):
            try:
                self.fs.rm(self._key(digest))
            except FileNotFoundError:
                pass

    def _listing(self) -> list[dict[str, Any]]:
        with self._failing("listing its objects"):
            if not self.fs.exists(self.root):
                return []
            return list(self.fs.find(self.root, detail=True).values())

    def digests(self) -> Iterator[tuple[str, float]]:
        """Every stored digest with its object's modification time."""
        for info in self._listing():
            name = info["name"].rsplit("/", 1)[-1]
            if not name.startswith(_TMP):
                yield name, _mtime(info)

    def temporaries(self) -> Iterator[tuple[str, float]]:
        """The temporary objects of writes that never finished, relative to the root, with their times."""
        for info in self._listing():
            if info["name"].rsplit("/", 1)[-1].startswith(_TMP):
                yield info["name"][len(self.root):].lstrip("/"), _mtime(info)

    def remove_temporary(self, name: str) -> None:
        """Remove a temporary object :meth:`temporaries` listed (no error if it is gone)."""
        if not name.rsplit("/", 1)[-1].startswith(_TMP) or name.startswith("/") or ".." in name.split("/"):
            raise ValueError(f"{name!r} is not a temporary file of the artifact store")
        with self._failing(f"removing the temporary {name}"):
            try:
                self.fs.rm(f"{self.root}/{name}")
            except FileNotFoundError:
                pass


def _mtime(info: dict[str, Any]) -> float:
    import time

    mtime = info.get("mtime") or info.get("LastModified") or info.get("created") or time.time()
    return mtime.timestamp() if hasattr(mtime, "timestamp") else float(mtime)


def check_url(url: str) -> str:
    """``url``, if it is one to record: no credentials in it (``s3://key:secret@bucket``).

    Raises:
        StoreError: naming the URL with its credentials masked.
    """
    parts = urlsplit(url)
    if "@" in parts.netloc:
        shown = urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))
        raise StoreError(f"the artifact store URL {shown} carries credentials: every artifact's URL is recorded, "
                         f"so give them the backend's usual way instead (for S3: AWS_ACCESS_KEY_ID and "
                         f"AWS_SECRET_ACCESS_KEY, or AWS_PROFILE) and drop them from the URL")
    return url


def describe_error(exc: BaseException) -> str:
    """An error's class and text, one line."""
    text = str(exc).strip() or repr(exc)
    return f"{type(exc).__name__}: {text}"


def artifact_files(root: str | os.PathLike[str]) -> ArtifactFiles | FsspecArtifactFiles:
    """The artifact folder for a local path or an fsspec URL (``s3://`` and ``s3a://`` on S3).

    Raises:
        StoreError: a URL that cannot be used (see :class:`FsspecArtifactFiles`); for S3
            without s3fs installed, the extra to install.
    """
    text = os.fspath(root)
    if "://" not in text:
        return ArtifactFiles(text)
    if text.split("://", 1)[0].lower() in ("s3", "s3a"):
        check_url(text)
        try:
            from flowkit.store.s3 import S3ArtifactFiles
        except ImportError as exc:
            raise StoreError(f"the artifact store at {text} needs s3fs: pip install 'flowkit[s3]' ({exc})") from exc
        return S3ArtifactFiles(text)
    return FsspecArtifactFiles(text)
