"""Request and response bodies on the wire: a closable streamed upload, a bounded read.

Used by the requester for every call, and by the code runner, the websocket helper and
the streams that hand a response body to the caller.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from .._compat import AsyncCleanupScope, AsyncSemaphore
from .._error_mapping import deadline_passed_reading, too_large


class AsyncBodyStream(httpx.AsyncByteStream):
    """A request body read from the caller's iterable, closable after a failed send."""

    def __init__(self, content: Any) -> None:
        self._iterator = content.__aiter__()

    def __aiter__(self) -> AsyncBodyStream:
        """The stream is its own iterator (no generator is left behind)."""
        return self

    async def __anext__(self) -> bytes:
        """The caller's next chunk, as bytes."""
        chunk = await self._iterator.__anext__()
        return bytes(chunk)

    async def aclose(self) -> None:
        """Close the caller's iterator, if it can be closed."""
        close = getattr(self._iterator, "aclose", None)
        if close is not None:
            await close()


class AsyncSlotStream(httpx.AsyncByteStream):
    """A streamed response's body, which gives the pool slot back when it is closed.

    A stream keeps its connection until it is closed, so it keeps the slot it was sent
    with until then as well: the slots then count exactly the connections in use, and a
    call that finds none free waits in ``take_slot`` (which waits while the pool moves)
    rather than inside httpcore's pool (which fails at the pool timeout even while the
    pool moves). Closing twice gives the slot back once.
    """

    def __init__(self, stream: httpx.AsyncByteStream, slots: AsyncSemaphore) -> None:
        self._stream = stream
        self._slots: AsyncSemaphore | None = slots

    def __aiter__(self) -> AsyncIterator[bytes]:
        """The body's chunks, straight from the wrapped stream."""
        return self._stream.__aiter__()

    async def aclose(self) -> None:
        """Close the wrapped stream, then give the slot back (once)."""
        try:
            await self._stream.aclose()
        finally:
            slots, self._slots = self._slots, None
            if slots is not None:
                slots.release()


def keep_slot_until_closed(response: httpx.Response, slots: AsyncSemaphore) -> None:
    """Hand a pool slot to an open streamed response: it gives it back when closed."""
    stream = response.stream
    assert isinstance(stream, httpx.AsyncByteStream)  # what the client's responses carry
    response.stream = AsyncSlotStream(stream, slots)


async def read_body(
    response: httpx.Response,
    deadline: float | None,
    limit: int,
    method: str,
    path: str,
    *,
    attempt_deadline: float | None = None,
) -> bytes:
    """Read the whole body, enforcing the size cap and the deadlines between chunks.

    httpx's read timeout is per chunk, so a server that drips one byte at a time would
    never trip it; checking the deadline as chunks arrive bounds the whole call. The
    attempt's own deadline is checked too, for a blocking client sending through a
    caller's ``http_client`` (whose sockets ``bound_attempts`` could not wrap).
    """
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(response.status_code, limit)
    chunks: list[bytes] = []
    size = 0
    iterator = body_chunks(response)
    try:
        async for chunk in iterator:
            size += len(chunk)
            if size > limit:
                raise too_large(response.status_code, limit)
            chunks.append(chunk)
            if deadline is not None and time.monotonic() > deadline:
                raise deadline_passed_reading(method, path, attempt=False)
            if attempt_deadline is not None and time.monotonic() > attempt_deadline:
                raise deadline_passed_reading(method, path, attempt=True)
    except BaseException:
        # Stopping early: close the response and unwind httpx's nested body generators
        # now, so none is left for the garbage collector (trio warns about those).
        with AsyncCleanupScope(1.0):
            await response.aclose()
            await finish_iterator(iterator)
        raise
    return b"".join(chunks)


def body_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive, decoded if the server compressed them.

    A body sent as it is (no ``Content-Encoding``, as every API answer we have seen) is
    read straight from the response's stream: ``aiter_bytes`` would add two generator
    layers, a decoder and a chunker that pass every chunk through unchanged, a sixth of
    a small call's cost. Both raise httpx's own errors. A response whose body httpx has
    read already (one a caller's transport built from bytes) has it only in
    ``aiter_bytes``.
    """
    encoding = response.headers.get("content-encoding")
    if not response.is_stream_consumed and (
        encoding is None or encoding.strip().lower() == "identity"
    ):
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)  # what the client's responses carry
        return stream.__aiter__()
    return response.aiter_bytes()


_SPENT_STREAM = httpx.ByteStream(b"")


def unlink_stream(response: httpx.Response) -> None:
    """Break the reference cycle between a closed response and its body stream.

    httpx wraps every body stream in one that points back at its response (to record
    ``elapsed`` when closed). That cycle keeps the response, its request and httpcore's
    per-request objects (some 40 of them) alive until the garbage collector runs, so
    every call fed the collector. With the body read and the response closed the stream
    has no further use; replacing it lets reference counting free everything at once.
    """
    response.stream = _SPENT_STREAM


async def finish_iterator(chunks: AsyncIterator[bytes]) -> None:
    """Unwind a partly read body iterator after its response has been closed.

    httpx nests async generators (``aiter_bytes`` over ``aiter_raw`` over the pool's
    stream); closing only the outermost leaves the inner ones suspended, and trio warns
    when the garbage collector later finds them. Advancing once more after the response
    is closed makes the innermost read fail, which unwinds and finishes every layer.
    Chunks that were already buffered are drained first (bounded).
    """
    for _ in range(1024):
        try:
            await chunks.__anext__()
        except Exception:  # the end of the body, or the closed stream refusing to read
            return
