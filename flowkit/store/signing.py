"""Signing what the store holds with the project's key (HMAC-SHA256), so that what flowkit did not write is refused.

The key is ``$FLOWKIT_SIGNING_KEY`` (at least 32 characters, the same on every host that shares a
store), else a random key kept in ``<home>/signing.key`` (mode 0600, made on first use, by the same
mechanism as the secrets' ``<home>/secret.key``: :func:`flowkit.secrets.key_file`).

Three things are signed, each with its own prefix so that no signature stands for another:

- with signing on (``Store(sign=True)`` or ``FLOWKIT_SIGN_ARTIFACTS=1``), an **artifact**: its id
  (the digest of its bytes) and how its bytes decode (pickle, feather...). A read checks the bytes
  against the id before anything is deserialized, so the signature covers the bytes too;
- with signing on, a **cache entry**: its key, its content key and the artifact it names, so an
  entry re-pointed to another artifact (another valid, signed one included) is refused;
- always, a **schedule's parameters** (:mod:`flowkit.scheduler` pickles them): the schedule's name,
  its flow reference and the pickled bytes, checked before the bytes are unpickled and before the
  reference is imported.

Signatures are computed where the records are written (the run's recorder, the scheduler), never
on a worker: a worker only needs the artifact store, and the bytes it reads are checked against the
id the client verified.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Any

from flowkit.errors import StoreError
from flowkit.secrets import key_file

__all__ = ["KEY_ENV", "KEY_FILE", "SIGN_ENV", "Signer", "sign_from_env", "signer_for"]

#: Turns signing on for every store this process opens without ``sign=``.
SIGN_ENV = "FLOWKIT_SIGN_ARTIFACTS"
#: The signing key itself (text); set it on every host that shares a store.
KEY_ENV = "FLOWKIT_SIGNING_KEY"
#: The key file in the store's home, used when ``FLOWKIT_SIGNING_KEY`` is not set.
KEY_FILE = "signing.key"

_MAGIC = b"FKSIG1"  # what a signed blob starts with, before its 32-byte MAC
_MAC_SIZE = 32
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def sign_from_env() -> bool:
    """Whether ``FLOWKIT_SIGN_ARTIFACTS`` asks for signing.

    Raises:
        StoreError: a value that is neither yes nor no.
    """
    text = os.environ.get(SIGN_ENV, "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise StoreError(f"{SIGN_ENV}={os.environ[SIGN_ENV]!r}: say 1 to sign the store's artifacts, 0 not to")


def _family(serializer: str) -> str:
    # cloudpickle's output loads with plain pickle, and equal bytes get one record: one name for both
    return "pickle" if serializer == "cloudpickle" else serializer


class Signer:
    """HMAC-SHA256 signatures under one key (see the module docstring for what is signed).

    ``source`` says where the key came from, for messages (``FLOWKIT_SIGNING_KEY`` or the key file).
    """

    __slots__ = ("_key", "source")

    def __init__(self, key: bytes, source: str) -> None:
        self._key = key
        self.source = source

    def __repr__(self) -> str:
        return f"Signer(key from {self.source})"

    def _mac(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def artifact(self, artifact_id: str, serializer: str) -> str:
        """The signature of an artifact: its id (the digest of its bytes) and how they decode."""
        return self._mac(f"artifact\x00{artifact_id}\x00{_family(serializer)}")

    def entry(self, key: str, content: str | None, artifact_id: str) -> str:
        """The signature of a cache entry: its key, its content key and the artifact it names."""
        return self._mac(f"cache\x00{key}\x00{content or ''}\x00{artifact_id}")

    def valid_artifact(self, artifact_id: str, serializer: str, signature: str | None) -> bool:
        return signature is not None and hmac.compare_digest(signature, self.artifact(artifact_id, serializer))

    def valid_hit(self, hit: Any) -> bool:
        """Whether a cache hit's entry and artifact both carry this key's signatures."""
        return (hit.signature is not None and hit.artifact_signature is not None
                and hmac.compare_digest(hit.signature, self.entry(hit.key, hit.content, hit.artifact_id))
                and hmac.compare_digest(hit.artifact_signature, self.artifact(hit.artifact_id, hit.serializer)))

    def sign(self, batch: Any) -> None:
        """Add the signatures of a :class:`~flowkit.store.protocols.Batch`'s artifacts and cache entries to it."""
        if batch.artifacts:
            batch.signed_artifacts.extend((self.artifact(r[0], r[2]), r[0]) for r in batch.artifacts)
        if batch.cache:
            batch.signed_entries.extend((self.entry(r[0], r[8], r[1]), r[0]) for r in batch.cache)

    # --- blobs (a schedule's pickled parameters) -----------------------------------------------

    def _blob_mac(self, what: str, data: bytes) -> bytes:
        mac = hmac.new(self._key, what.encode() + b"\x00", hashlib.sha256)
        mac.update(data)
        return mac.digest()

    def seal(self, what: str, data: bytes) -> bytes:
        """``data`` with a signature in front that binds it to ``what`` (a schedule's name and flow)."""
        return _MAGIC + self._blob_mac(what, data) + data

    def unseal(self, what: str, blob: bytes) -> bytes | None:
        """The data :meth:`seal` put in ``blob`` for ``what``; ``None`` if the blob is unsigned, or signed for
        something else or with another key."""
        blob = bytes(blob)
        head = len(_MAGIC) + _MAC_SIZE
        if not blob.startswith(_MAGIC) or len(blob) < head:
            return None
        data = blob[head:]
        if not hmac.compare_digest(blob[len(_MAGIC):head], self._blob_mac(what, data)):
            return None
        return data


def signer_for(home: str | os.PathLike[str]) -> Signer:
    """The signer of the store at ``home``: ``$FLOWKIT_SIGNING_KEY``, else ``<home>/signing.key`` (made if missing).

    Raises:
        StoreError: the key in the environment is too short, or the key file cannot be read or made.
    """
    text = os.environ.get(KEY_ENV)
    if text:
        if len(text) < 32:
            raise StoreError(f"{KEY_ENV} is {len(text)} characters long; a signing key needs at least 32 (make one "
                             f"with: python -c 'import secrets; print(secrets.token_hex(32))')")
        return Signer(text.encode(), KEY_ENV)
    path = Path(home) / KEY_FILE
    try:
        return Signer(key_file(path), str(path))
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot use the signing key {path}: {exc}. Set {KEY_ENV}, or make the store's folder "
                         f"writable") from exc
