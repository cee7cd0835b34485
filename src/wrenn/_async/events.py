"""``client.events``: the team's server-sent event stream."""

from __future__ import annotations

import codecs
import contextlib
import socket
from collections import deque
from collections.abc import AsyncIterator

import httpx
import msgspec

from .._constants import DEFAULT_SSE_IDLE_TIMEOUT
from .._exceptions import (
    WrennClientClosedError,
    WrennStreamError,
    WrennStreamInterruptedError,
    WrennStreamTimeoutError,
)
from .._models import SSEEvent, sse_event_decoder
from .._sse import ServerSentEvent, SSEDecoder
from .._validate import positive_seconds
from ._resource import AsyncAPIResource
from ._stream import AsyncResponseStream

_SSE_HEADERS = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}


class AsyncEvents(AsyncAPIResource):
    """Subscribe to capsule and template events."""

    def stream(self, *, idle_timeout: float = DEFAULT_SSE_IDLE_TIMEOUT) -> AsyncEventStream:
        """Open the event stream.

        Iterate the result directly, or use it as a context manager so that leaving
        the block (or breaking out of the loop inside it) closes the connection at once::

            with client.events.stream() as events:
                for event in events:
                    ...

        ``idle_timeout`` bounds the silence between two bytes from the server (the
        server sends a keepalive comment every few seconds); past it the stream raises
        ``WrennStreamTimeoutError``.
        """
        return AsyncEventStream(self, positive_seconds(idle_timeout, "idle_timeout"))


class AsyncEventStream(AsyncResponseStream):
    """An open (or lazily opened) server-sent event stream yielding ``SSEEvent`` objects."""

    def __init__(self, resource: AsyncEvents, idle_timeout: float) -> None:
        self._resource = resource
        self._idle_timeout = idle_timeout
        self._response: httpx.Response | None = None
        self._chunks: AsyncIterator[bytes] | None = None
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._decoder = SSEDecoder()
        self._pending: deque[ServerSentEvent] = deque()
        self._finished = False
        self._interrupted = False

    @property
    def interrupted(self) -> bool:
        """Whether ``interrupt()`` ended this stream (rather than the server or the network)."""
        return self._interrupted

    def interrupt(self) -> None:
        """Shut the connection down, from any thread, so that a read blocked on it returns.

        For a blocking reader on another thread, which closing alone would not wake. The
        reader then sees the stream break; ``interrupted`` tells it that was on purpose.
        """
        self._interrupted = True
        response = self._response
        network = response.extensions.get("network_stream") if response is not None else None
        sock = network.get_extra_info("socket") if network is not None else None
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    @property
    def last_event_id(self) -> str | None:
        """The id of the last event received, for resuming elsewhere."""
        return self._decoder.last_event_id

    async def _open(self) -> None:
        requester = self._resource._requester
        self._response = await requester.open_stream(
            self._resource._client._options,
            "GET",
            "/v1/events/stream",
            headers=_SSE_HEADERS,
            idle_timeout=self._idle_timeout,
        )
        self._chunks = self._response.aiter_bytes()

    async def __anext__(self) -> SSEEvent:
        while True:
            if self._pending:
                return _parse(self._pending.popleft())
            if self._finished:
                raise StopAsyncIteration
            if self._chunks is None:
                await self._open()
            assert self._chunks is not None
            if self._interrupted:
                # Checked after the response is stored: an interrupt that came before it
                # could shut no socket down, so it is honoured here instead.
                await self.aclose()
                raise StopAsyncIteration
            if self._resource._requester.closed:
                await self.aclose()
                raise WrennClientClosedError(
                    "client_closed", "the client was closed while the stream was open"
                )
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                self._pending.extend(self._decoder.feed(self._text.decode(b"", final=True)))
                self._pending.extend(self._decoder.close())
                await self.aclose()
                continue
            except httpx.TimeoutException as exc:
                await self.aclose()
                raise WrennStreamTimeoutError(
                    f"no data from the event stream for {self._idle_timeout:g} s"
                ) from exc
            except httpx.TransportError as exc:
                await self.aclose()
                raise WrennStreamInterruptedError(
                    f"the event stream broke: {type(exc).__name__}",
                    last_event_id=self._decoder.last_event_id,
                ) from exc
            self._pending.extend(self._decoder.feed(self._text.decode(chunk)))


def _parse(event: ServerSentEvent) -> SSEEvent:
    try:
        return sse_event_decoder.decode(event.data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise WrennStreamError(
            "invalid_event", f"malformed {event.event!r} event from the server: {exc}"
        ) from exc
