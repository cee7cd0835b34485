"""``capsule.files``: read, write, list and stream files inside a capsule."""

from __future__ import annotations

import builtins
import contextlib
import os
import posixpath
from collections.abc import AsyncIterable, AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING

import httpx

from .._constants import FILE_READ_LIMIT, FILE_TRANSFER_READ_TIMEOUT
from .._exceptions import (
    WrennAgentError,
    WrennConflictError,
    WrennNotFoundError,
    WrennStreamInterruptedError,
    WrennStreamTimeoutError,
)
from .._models_base import json_encoder
from .._models_data import (
    FileEntry,
    ListDirRequest,
    ReadFileRequest,
    RemoveRequest,
    list_dir_decoder,
    make_dir_decoder,
)
from .._responses import decode
from .._urls import build_path
from .._validate import optional_int
from ._resource import AsyncAPIResource
from ._stream import AsyncResponseStream
from .lease import AsyncLeaseHold

if TYPE_CHECKING:
    from .client import AsyncWrennClient
    from .lease import AsyncLease

_JSON = {"Content-Type": "application/json"}


def _check_path(path: object) -> str:
    if not isinstance(path, str):
        raise TypeError(f"path must be a str, not {type(path).__name__}")
    if not path or "\x00" in path:
        raise ValueError("path must be a non-empty string without NUL characters")
    return path


class AsyncDownloadStream(AsyncResponseStream):
    """The bytes of a file as they arrive; iterate directly or use as a context manager.

    A transfer that breaks off raises ``WrennStreamInterruptedError`` instead of
    returning short data. With ``keepalive=True`` it must be used as a context
    manager: the lease on the capsule is held for the block.
    """

    def __init__(self, files: AsyncFiles, path: str, lease: AsyncLease | None = None) -> None:
        self._files = files
        self._path = path
        self._hold = AsyncLeaseHold(lease)
        self._response: httpx.Response | None = None
        self._chunks: AsyncIterator[bytes] | None = None
        self._received = 0
        self._expected: int | None = None
        self._finished = False

    async def __aenter__(self) -> AsyncDownloadStream:
        await self._hold.enter()
        try:
            await super().__aenter__()
        except BaseException as exc:
            await self._hold.exit(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.aclose()
        finally:
            await self._hold.exit(exc_type, exc, tb)

    async def _open(self) -> AsyncIterator[bytes]:
        self._hold.require_block("download")
        self._response = await self._files._stream(
            "POST",
            self._files._path("/v1/capsules/{id}/files/stream/read"),
            content=json_encoder.encode(ReadFileRequest(path=self._path)),
            headers=_JSON,
            read_timeout=FILE_TRANSFER_READ_TIMEOUT,
        )
        length = self._response.headers.get("content-length")
        if (
            length is not None
            and length.isdigit()
            and "content-encoding" not in self._response.headers
        ):
            self._expected = int(length)
        self._chunks = self._response.aiter_bytes()
        return self._chunks

    async def __anext__(self) -> bytes:
        if self._finished:
            raise StopAsyncIteration
        chunks = self._chunks if self._chunks is not None else await self._open()
        try:
            chunk = await chunks.__anext__()
        except StopAsyncIteration:
            expected, received = self._expected, self._received
            await self.aclose()
            if expected is not None and received != expected:
                raise WrennStreamInterruptedError(
                    f"the download of {self._path} ended after {received} of {expected} bytes"
                ) from None
            raise
        except httpx.TimeoutException as exc:
            await self.aclose()
            raise WrennStreamTimeoutError(f"the download of {self._path} stalled") from exc
        except httpx.TransportError as exc:
            received = self._received
            await self.aclose()
            raise WrennStreamInterruptedError(
                f"the download of {self._path} broke off after {received} bytes ({type(exc).__name__})"
            ) from exc
        self._received += len(chunk)
        return chunk


class AsyncFiles(AsyncAPIResource):
    """The file system of one capsule."""

    def __init__(self, client: AsyncWrennClient, capsule_id: str) -> None:
        super().__init__(client)
        self._capsule_id = capsule_id

    def _path(self, template: str) -> str:
        return build_path(template, id=self._capsule_id)

    def _lease(self, keepalive: bool) -> AsyncLease | None:
        return self._client.capsules.lease(self._capsule_id) if keepalive else None

    def _keepalive(self, keepalive: bool) -> AsyncLease | contextlib.nullcontext[None]:
        """A lease on the capsule while a transfer runs (``keepalive=True``), or nothing.

        The platform's inactivity timer counts execs and pings, not file traffic: a
        long transfer alone lets a capsule with ``timeout_sec`` pause under it.
        """
        lease = self._lease(keepalive)
        return lease if lease is not None else contextlib.nullcontext()

    async def read(self, path: str, *, keepalive: bool = False) -> str:
        """Read a file as UTF-8 text (undecodable bytes become U+FFFD)."""
        return (await self.read_bytes(path, keepalive=keepalive)).decode("utf-8", errors="replace")

    async def read_bytes(self, path: str, *, keepalive: bool = False) -> bytes:
        """Read a file's bytes; ``keepalive=True`` holds a lease on the capsule meanwhile."""
        checked = _check_path(path)
        async with self._keepalive(keepalive):
            response = await self._request(
                "POST",
                self._path("/v1/capsules/{id}/files/read"),
                content=json_encoder.encode(ReadFileRequest(path=checked)),
                headers=_JSON,
                read_timeout=FILE_TRANSFER_READ_TIMEOUT,
                max_response_bytes=max(self._client.options.max_response_bytes, FILE_READ_LIMIT),
            )
        return response.content

    async def write(self, path: str, data: str | bytes, *, keepalive: bool = False) -> None:
        """Write a file (created or replaced), up to the server's 100 MiB limit.

        ``keepalive=True`` holds a lease on the capsule while the upload runs.
        """
        if isinstance(data, str):
            data = data.encode("utf-8")
        elif not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be str or bytes, not {type(data).__name__}")
        checked = _check_path(path)
        async with self._keepalive(keepalive):
            await self._request(
                "POST",
                self._path("/v1/capsules/{id}/files/write"),
                ok=(204, 200),
                data={"path": checked},
                files={"file": ("upload", bytes(data), "application/octet-stream")},
                read_timeout=FILE_TRANSFER_READ_TIMEOUT,
            )

    async def list(self, path: str, depth: int = 1) -> builtins.list[FileEntry]:
        """List a directory; ``depth`` > 1 recurses that many levels."""
        body = ListDirRequest(path=_check_path(path), depth=optional_int(depth, "depth", minimum=1))
        response = await self._request(
            "POST",
            self._path("/v1/capsules/{id}/files/list"),
            content=json_encoder.encode(body),
            headers=_JSON,
        )
        return decode(list_dir_decoder, response).entries

    async def exists(self, path: str) -> bool:
        """Whether a path exists. A missing parent directory means False, and ``/`` exists."""
        normalized = posixpath.normpath(_check_path(path))
        if normalized in ("/", "//"):
            return True
        parent, name = posixpath.split(normalized)
        try:
            entries = await self.list(parent or ".")
        except (WrennNotFoundError, WrennAgentError):
            # The platform reports a missing or non-directory parent as an agent error.
            return False
        return any(entry.name == name for entry in entries)

    async def make_dir(self, path: str) -> FileEntry:
        """Create a directory and return its entry; an existing directory is returned as is."""
        checked = _check_path(path)
        try:
            response = await self._request(
                "POST",
                self._path("/v1/capsules/{id}/files/mkdir"),
                content=json_encoder.encode(ReadFileRequest(path=checked)),
                headers=_JSON,
            )
        except WrennConflictError:
            normalized = posixpath.normpath(checked)
            parent, name = posixpath.split(normalized)
            for entry in await self.list(parent or "/"):
                if entry.name == name:
                    return entry
            raise
        return decode(make_dir_decoder, response).entry

    async def remove(self, path: str) -> None:
        """Remove a file or a directory tree."""
        await self._request(
            "POST",
            self._path("/v1/capsules/{id}/files/remove"),
            ok=(204, 200),
            content=json_encoder.encode(RemoveRequest(path=_check_path(path))),
            headers=_JSON,
        )

    async def upload_stream(
        self, path: str, stream: AsyncIterable[bytes], *, keepalive: bool = False
    ) -> None:
        """Write a file from an iterable of byte chunks, in bounded memory and without a size limit.

        The body is sent once: a failed upload is not retried, because the chunks
        cannot be replayed. ``keepalive=True`` holds a lease on the capsule while the
        upload runs, so a long one does not let it auto-pause.
        """
        boundary = os.urandom(16).hex()
        checked = _check_path(path)
        async with self._keepalive(keepalive):
            await self._request(
                "POST",
                self._path("/v1/capsules/{id}/files/stream/write"),
                ok=(204, 200),
                content=_multipart(boundary, checked, stream),
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                read_timeout=FILE_TRANSFER_READ_TIMEOUT,
                replayable=False,
            )

    def download_stream(self, path: str, *, keepalive: bool = False) -> AsyncDownloadStream:
        """Read a file as a stream of byte chunks, in bounded memory.

        ``keepalive=True`` holds a lease on the capsule for the ``with`` block.
        """
        return AsyncDownloadStream(self, _check_path(path), self._lease(keepalive))


async def _multipart(
    boundary: str, path: str, stream: AsyncIterable[bytes]
) -> AsyncIterator[bytes]:
    """A multipart body with the ``path`` part first: the platform reads the parts in order."""
    yield (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="path"\r\n\r\n'
        f"{path}\r\n"
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="upload.bin"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    async for chunk in stream:
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise TypeError(f"upload chunks must be bytes, not {type(chunk).__name__}")
        if chunk:
            yield bytes(chunk)
    yield f"\r\n--{boundary}--\r\n".encode()
