"""Artifacts on S3 or an S3-compatible server (``s3://bucket/prefix``), through s3fs.

Configuration is the standard one of s3fs and botocore, read when the store first
talks to S3: credentials from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``
(``AWS_SESSION_TOKEN``), ``AWS_PROFILE`` or an instance role; the endpoint of a
server other than AWS from ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``, or
``endpoint_url`` in the profile); the region from ``AWS_DEFAULT_REGION``. Other
s3fs options come from fsspec's configuration (``FSSPEC_S3_*`` variables or
``~/.config/fsspec``); ``config_kwargs`` given there are laid over the client
settings below, which bound how long a call to an unreachable endpoint takes.

A write publishes the object whole, and only once what landed is checked:

1. ``HEAD`` the final key (``<prefix>/<d[:2]>/<d>``): already there, nothing to do.
2. ``CreateMultipartUpload`` on the final key. Nothing is visible under a key until
   its upload is completed, so the pending upload is the temporary.
3. ``UploadPart`` for each slice of :func:`part_size` bytes, several at once, each
   with its ``Content-MD5`` (S3 refuses a part whose bytes differ: ``BadDigest``);
   the ETag the server answers, the MD5 of what it received, must be that MD5.
4. Only where an ETag is no MD5 (SSE-KMS, SSE-C): ``ListParts``, the server's own
   account of the parts, whose sizes must be those sent.
5. ``CompleteMultipartUpload``: the object appears under its key, whole, at once.

Four requests for an object of one part (``HEAD``, create, one part, complete), as
many as a temporary key would take (``PUT``, ``HEAD``, copy, delete).

Any failure aborts the upload, so nothing stays behind; an upload a killed process
left pending is aborted by ``Store.gc`` once it is older than the grace period
(:meth:`S3ArtifactFiles.temporaries`). Publishing by a temporary key would need a
server-side copy to reach the final key, which rewrites every byte and takes as long
as the upload itself. With SSE-KMS or SSE-C the ETag is no MD5; the server still
checks each part's ``Content-MD5``, and the sizes are compared.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import Coroutine, Iterable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

import botocore.exceptions
import fsspec
import s3fs  # noqa: F401 - imported here so that a missing s3fs is said when the store is opened
from fsspec.asyn import sync

from flowkit.errors import StoreError
from flowkit.faults import FAULTS, fault
from flowkit.store.artifacts import FsspecArtifactFiles

__all__ = ["CLIENT_CONFIG", "PART_SIZE", "RANGE_SIZE", "S3ArtifactFiles", "part_size"]

T = TypeVar("T")

#: botocore client settings: seconds to connect and between bytes read, and attempts per call.
CLIENT_CONFIG: dict[str, Any] = {"connect_timeout": 5, "read_timeout": 15,
                                 "retries": {"total_max_attempts": 3, "mode": "standard"}}
#: s3fs's own attempts per call, on top of botocore's (for reads cut short).
S3FS_RETRIES = 2
#: Bytes per uploaded part (S3: at least 5 MiB except the last, at most 10,000 parts).
PART_SIZE = 50 << 20
#: Bytes per ranged GET of a large object.
RANGE_SIZE = 50 << 20
_MAX_PARTS = 10_000
#: What cuts a ranged read short, to resume it.
_CUT_SHORT = (botocore.exceptions.HTTPClientError, botocore.exceptions.IncompleteReadError, asyncio.TimeoutError,
              ConnectionError)
_UPLOAD = "?uploadId="  # a pending upload's name among the temporaries: <key relative to the root>?uploadId=<id>
_ETAG_NOT_MD5 = ("aws:kms", "aws:kms:dsse")


def part_size(size: int) -> int:
    """The part size for an object of ``size`` bytes: :data:`PART_SIZE`, more past 10,000 parts."""
    need = -(-size // _MAX_PARTS)
    return max(PART_SIZE, -(-need // (1 << 20)) << 20)


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def _etag_is_md5(response: dict[str, Any]) -> bool:
    return response.get("ServerSideEncryption") not in _ETAG_NOT_MD5 and "SSECustomerAlgorithm" not in response


def _codes(exc: BaseException) -> Iterator[tuple[BaseException, str | None]]:
    """Each exception in ``exc``'s chain, with its S3 error code when it is a client error."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        response = getattr(cur, "response", None)
        yield cur, (response.get("Error", {}).get("Code") if isinstance(response, dict) else None)
        cur = cur.__cause__ or cur.__context__


async def _all(coroutines: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run the coroutines at once; at the first failure, cancel the others, wait for them, and raise it."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:  # nothing goes on behind the failure (no part lands after an abort)
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class S3ArtifactFiles(FsspecArtifactFiles):
    """The artifact folder at ``s3://bucket/prefix``: published by a verified multipart upload.

    A read fetches the object into one buffer, a large one in ranges of :data:`RANGE_SIZE`,
    several at once, and checks it against the digest before anything is deserialized.
    """

    def __init__(self, url: str) -> None:
        if not urlsplit(url).netloc:
            raise StoreError(f"the artifact store URL {url!r} names no bucket: use s3://bucket/prefix")
        super().__init__(url)
        self.bucket, _, self.prefix = self.root.partition("/")
        self.fs.retries = S3FS_RETRIES  # this instance is the store's own (skip_instance_cache)

    def _options(self) -> dict[str, Any]:
        # A filesystem of its own: it reads the environment (endpoint, credentials) when it first
        # calls S3, not when some other s3fs user made a cached one, and it never answers from a
        # listing that another process outdated.
        configured = fsspec.config.conf.get("s3", {}).get("config_kwargs") or {}
        return {"skip_instance_cache": True, "use_listings_cache": False,
                "config_kwargs": {**CLIENT_CONFIG, **configured}}

    def _hint(self, exc: BaseException) -> str:
        for cause, code in _codes(exc):
            if isinstance(cause, (botocore.exceptions.EndpointConnectionError,
                                  botocore.exceptions.ConnectTimeoutError, botocore.exceptions.ReadTimeoutError)):
                return (f"Check that the S3 endpoint{self._endpoint()} can be reached (AWS_ENDPOINT_URL, or the "
                        f"profile's endpoint_url, names a server other than AWS)")
            if code == "NoSuchBucket":
                return f"Create the bucket {self.bucket!r}, or point FLOWKIT_ARTIFACTS at one that exists"
            if isinstance(cause, botocore.exceptions.NoCredentialsError):
                return "Give S3 credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
            if isinstance(cause, PermissionError) or code in ("AccessDenied", "InvalidAccessKeyId",
                                                              "SignatureDoesNotMatch", "ExpiredToken"):
                return (f"Check the S3 credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or AWS_PROFILE) "
                        f"and what they may do in the bucket {self.bucket!r}")
        return ""

    def _endpoint(self) -> str:
        client = getattr(self.fs, "_s3", None)
        url = getattr(getattr(client, "meta", None), "endpoint_url", None)
        return f" {url}" if url else ""

    # --- reading -------------------------------------------------------------------------------

    def _fetch(self, key: str) -> memoryview:
        """The object's bytes in one buffer (large ones in ranges, several at once); :meth:`read` checks them."""
        return sync(self.fs.loop, self._download, key)

    async def _download(self, key: str) -> memoryview:
        bucket, name = key.split("/", 1)
        size = (await self.fs._call_s3("head_object", Bucket=bucket, Key=name))["ContentLength"]
        view = memoryview(bytearray(size))  # the one copy: each range is read straight into its place
        ranges = [(start, min(start + RANGE_SIZE, size)) for start in range(0, size, RANGE_SIZE)]
        gate = asyncio.Semaphore(self.fs.max_concurrency)

        async def fetch(start: int, end: int) -> None:
            async with gate:
                for attempt in range(S3FS_RETRIES):
                    try:
                        await self._fetch_into(view, bucket, name, start, end)
                        return
                    except _CUT_SHORT:  # the connection dropped mid-range: read the range again
                        if attempt + 1 == S3FS_RETRIES:
                            raise

        await _all(fetch(start, end) for start, end in ranges)
        return view

    async def _fetch_into(self, view: memoryview, bucket: str, name: str, start: int, end: int) -> None:
        """Read bytes ``start`` to ``end`` (exclusive) of the object into their place in ``view``."""
        answer = await self.fs._call_s3("get_object", Bucket=bucket, Key=name, Range=f"bytes={start}-{end - 1}")
        body = answer["Body"]
        try:
            # One read of the whole range, then one copy into its place: aiohttp hands out what it has
            # buffered (often 64 KiB), and a loop over such slices costs more than the copy.
            chunk = await body.read()
            if len(chunk) != end - start:
                raise botocore.exceptions.IncompleteReadError(actual_bytes=start + len(chunk), expected_bytes=end)
            view[start:end] = chunk
        finally:
            body.close()

    # --- writing -------------------------------------------------------------------------------

    def _publish(self, final: str, data: memoryview) -> None:
        sync(self.fs.loop, self._upload, final, data)

    async def _upload(self, final: str, data: memoryview) -> None:
        bucket, key = final.split("/", 1)
        call = self.fs._call_s3
        upload = (await call("create_multipart_upload", Bucket=bucket, Key=key))["UploadId"]
        where = {"Bucket": bucket, "Key": key, "UploadId": upload}
        try:
            sent, all_md5 = await self._send_parts(where, data)
            if FAULTS:
                fault("cache.after_temp_write")
            if not all_md5:  # an ETag that is no MD5 said nothing of the bytes: ask what landed
                await self._check_parts(where, sent)
            if FAULTS:
                fault("cache.after_fsync")
            parts = [{"PartNumber": number, "ETag": etag} for number, _, etag in sent]
            await call("complete_multipart_upload", **where, MultipartUpload={"Parts": parts})
        except BaseException:
            with contextlib.suppress(Exception):
                await call("abort_multipart_upload", **where)
            raise

    async def _send_parts(self, where: dict[str, str], data: memoryview) -> tuple[list[tuple[int, int, str]], bool]:
        """Upload ``data`` in parts, several at once: ``(number, size, ETag)`` of each, and whether every
        ETag was an MD5, and so was checked against the MD5 of the bytes sent."""
        loop = asyncio.get_running_loop()
        step = part_size(data.nbytes)
        gate = asyncio.Semaphore(self.fs.max_concurrency)  # bounds the parts held in memory too

        async def send(number: int, start: int) -> tuple[int, int, str, bool]:
            async with gate:
                body = bytes(data[start:start + step])
                md5 = await loop.run_in_executor(None, _md5, body)  # hashlib lets go of the GIL
                answer = await self.fs._call_s3("upload_part", **where, PartNumber=number, Body=body,
                                                ContentMD5=base64.b64encode(md5).decode())
                etag, checked = answer["ETag"], _etag_is_md5(answer)
                if checked and etag.strip('"') != md5.hex():
                    raise OSError(f"part {number} of the upload landed with ETag {etag}, but the MD5 of the "
                                  f"{len(body)} bytes sent is {md5.hex()}: the bytes were changed on the way")
                return number, len(body), etag, checked

        done = await _all(send(i + 1, start) for i, start in enumerate(range(0, data.nbytes or 1, step)))
        return [(number, size, etag) for number, size, etag, _ in done], all(c for *_, c in done)

    async def _check_parts(self, where: dict[str, str], sent: list[tuple[int, int, str]]) -> None:
        """Compare the server's list of the upload's parts (sizes, ETags) with what was sent, before publishing."""
        landed: dict[int, tuple[int, str]] = {}
        marker = 0
        while True:
            page = await self.fs._call_s3("list_parts", **where, PartNumberMarker=marker)
            landed.update((p["PartNumber"], (p["Size"], p["ETag"])) for p in page.get("Parts", ()))
            if not page.get("IsTruncated"):
                break
            marker = page["NextPartNumberMarker"]
        for number, size, etag in sent:
            if landed.get(number) != (size, etag):
                raise OSError(f"part {number} of the upload is {landed.get(number, 'missing')} on the server, "
                              f"but ({size}, {etag}) was sent")
        if len(landed) != len(sent):
            raise OSError(f"the upload has {len(landed)} parts on the server, but {len(sent)} were sent")

    # --- what unfinished writes left ------------------------------------------------------------

    def temporaries(self) -> Iterator[tuple[str, float]]:
        """Uploads never completed (``<key>?uploadId=<id>``, with the time of their last part) and
        ``.tmp-`` objects (an fsspec write, or an older flowkit's), named relative to the root."""
        yield from super().temporaries()
        with self._failing("listing its unfinished uploads"):
            pending = sync(self.fs.loop, self._pending)
        yield from pending

    async def _pending(self) -> list[tuple[str, float]]:
        prefix = f"{self.prefix}/" if self.prefix else ""
        out: list[tuple[str, float]] = []
        markers: dict[str, str] = {}
        while True:
            page = await self.fs._call_s3("list_multipart_uploads", Bucket=self.bucket, Prefix=prefix, **markers)
            for upload in page.get("Uploads", ()):
                where = {"Bucket": self.bucket, "Key": upload["Key"], "UploadId": upload["UploadId"]}
                last = upload["Initiated"].timestamp()
                try:  # a write still sending parts is alive, however long ago it began
                    parts = (await self.fs._call_s3("list_parts", **where)).get("Parts", ())
                except FileNotFoundError:  # completed or aborted since it was listed
                    continue
                last = max([last, *(p["LastModified"].timestamp() for p in parts)])
                out.append((f"{upload['Key'][len(prefix):]}{_UPLOAD}{upload['UploadId']}", last))
            if not page.get("IsTruncated"):
                return out
            markers = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}

    def remove_temporary(self, name: str) -> None:
        """Abort a pending upload, or remove a ``.tmp-`` object, that :meth:`temporaries` listed."""
        if _UPLOAD not in name:
            super().remove_temporary(name)
            return
        relative, _, upload = name.partition(_UPLOAD)
        key = f"{self.prefix}/{relative}" if self.prefix else relative
        with self._failing(f"aborting the unfinished upload {name}"):
            try:
                self.fs.call_s3("abort_multipart_upload", Bucket=self.bucket, Key=key, UploadId=upload)
            except FileNotFoundError:  # completed or aborted since
                pass
