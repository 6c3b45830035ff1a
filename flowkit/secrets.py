"""``Secret``: a task input whose value is never shown or stored.

``fk.Secret("hunter2")`` passed to a task (or a flow parameter annotated
``fk.Secret``, which ``-p password=...`` converts) reaches the task as the plain
value, but everywhere flowkit shows or records it -- ``repr``, stored parameters,
lineage records, run summaries -- it reads ``***``. Its cache key token is an
HMAC-SHA256 of the value under a random key kept in the store's folder
(``<home>/secret.key``, mode 0600), so the key changes with the value while the
store holds nothing that reveals it.

While a process knows a secret (one was made or unpickled here), its value is
replaced by ``***`` in captured task output, and in the error text and tracebacks
flowkit records (:func:`mask`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets as _random
import threading
from pathlib import Path
from typing import Any

__all__ = ["MASK", "Secret", "key_file", "mask"]

MASK = "***"

#: The values of the secrets this process has seen (made, unpickled or revealed), masked in output.
_KNOWN: set[str] = set()
_ordered: tuple[str, ...] = ()  # longest first, so a secret inside another is masked as part of it
_lock = threading.Lock()
_PROCESS_KEY = _random.token_bytes(32)  # for a secret tokenized outside any run (no store)
_store_keys: dict[str, bytes] = {}


def _register(value: Any) -> None:
    global _ordered
    texts = [value] if isinstance(value, str) else []
    if isinstance(value, bytes):
        try:
            texts.append(value.decode())
        except UnicodeDecodeError:
            pass
    texts = [t for t in texts if t and t not in _KNOWN]
    if texts:
        with _lock:
            _KNOWN.update(texts)
            _ordered = tuple(sorted(_KNOWN, key=len, reverse=True))


def mask(text: str | None) -> str | None:
    """``text`` with the value of every secret this process knows replaced by ``***``."""
    if not _ordered or not text or type(text) is not str:
        return text
    for value in _ordered:
        if value in text:
            text = text.replace(value, MASK)
    return text


def _key_for(inputs: Any) -> bytes:
    """The HMAC key of the store ``inputs`` (made on first use, 0600), or this process's."""
    home = getattr(inputs, "home", None)
    if home is None:
        return _PROCESS_KEY
    return key_file(Path(home) / "secret.key")


def key_file(path: Path) -> bytes:
    """The random 32-byte key kept in the file ``path``, made (mode 0600) on first use; read once per process.

    Several processes may make it at once: the first file written wins and the others read it.

    Raises:
        ValueError: the file holds fewer than 32 bytes (it is not such a key; delete it to make a new one).
    """
    cached = _store_keys.get(str(path))
    if cached is not None:
        return cached
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = b""
    if len(key) < 32:
        made = _random.token_bytes(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            key = path.read_bytes()
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(made)
            key = made
        if len(key) < 32:
            raise ValueError(f"{path} is not a flowkit key file (delete it to make a new one)")
    _store_keys[str(path)] = key
    return key


class Secret:
    """A value (a password, a token) that flowkit passes to tasks but never shows or stores.

    ``repr`` is ``Secret('***')`` and ``str`` is ``***``; :meth:`reveal` returns the
    value. A task given a ``Secret`` receives the plain value. It pickles with its
    value (so workers in other processes get it); two secrets are equal when
    their values are.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str | bytes) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        self._value = value
        _register(value)

    def reveal(self) -> Any:
        """The secret's value."""
        _register(self._value)
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return format(MASK, spec)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(
            _as_bytes(self._value), _as_bytes(other._value)) and type(self._value) is type(other._value)

    def __hash__(self) -> int:
        return hash(("flowkit.Secret", self._value))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Secret, (self._value,))

    def digest(self, inputs: Any = None) -> str:
        """HMAC-SHA256 of the value under the key of the store ``inputs`` (this process's without one)."""
        return hmac.new(_key_for(inputs), _as_bytes(self._value), hashlib.sha256).hexdigest()

    def __flowkit_token__(self, inputs: Any) -> Any:
        """Its token in a cache key: a keyed digest of the value, which reveals nothing of it."""
        from flowkit.hashing import Resolved

        return Resolved(("flowkit.Secret", type(self._value).__name__, self.digest(inputs)))

    def __dask_tokenize__(self) -> tuple[str, str]:
        return ("flowkit.Secret", self.digest())


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()
