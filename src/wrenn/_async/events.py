"""``client.events``: the team's server-sent event stream."""

from __future__ import annotations

import codecs
import contextlib
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING

import httpx
import msgspec

from .._compat import AsyncNotice
from .._constants import (
    DEFAULT_MAX_RECONNECTS,
    DEFAULT_RECONNECT_DELAY,
    DEFAULT_RECONNECT_TIMEOUT,
    DEFAULT_SSE_IDLE_TIMEOUT,
    DEFAULT_WAIT_TIMEOUT,
    KEPT_GAPS,
)
from .._exceptions import (
    WrennAPIStatusError,
    WrennClientClosedError,
    WrennConnectionError,
    WrennStreamError,
    WrennStreamInterruptedError,
    WrennStreamTimeoutError,
)
from .._models_control import SSEEvent, sse_event_decoder
from .._reconnect import (
    Backoff,
    EventStreamGap,
    SeenIds,
    utcnow,
)
from .._sse import ServerSentEvent, SSEDecoder
from .._validate import optional_int, positive_seconds
from ._body import finish_iterator
from ._resource import AsyncAPIResource
from ._stream import AsyncResponseStream

if TYPE_CHECKING:
    from .._models_control import Capsule

_SSE_HEADERS = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
_CONNECTED = "connected"


class AsyncEvents(AsyncAPIResource):
    """Subscribe to capsule and template events."""

    def stream(
        self,
        *,
        idle_timeout: float = DEFAULT_SSE_IDLE_TIMEOUT,
        reconnect: bool = True,
        max_reconnects: int = DEFAULT_MAX_RECONNECTS,
        reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT,
        reconnect_delay: float = DEFAULT_RECONNECT_DELAY,
        on_gap: Callable[[EventStreamGap], object] | None = None,
    ) -> AsyncEventStream:
        """Open the event stream.

        Iterate the result directly, or use it as a context manager so that leaving
        the block (or breaking out of the loop inside it) closes the connection at once::

            with client.events.stream() as events:
                for event in events:
                    ...

        ``idle_timeout`` bounds the silence between two bytes from the server (the
        server sends a keepalive comment every few seconds).

        By default a dropped connection, a silent one (past ``idle_timeout``) and one
        the server ends are reopened, after jittered, doubling delays starting at
        ``reconnect_delay`` seconds (or the server's ``retry:`` hint). At most
        ``max_reconnects`` attempts in a row, within ``reconnect_timeout`` seconds of
        the drop, are made before ``WrennStreamInterruptedError`` is raised; an answer
        that will not change (401, 403, 404, any other 4xx) is raised at once. A
        reconnect after which events may be missing is recorded as an
        ``EventStreamGap`` in ``stream.gaps`` and passed to ``on_gap``: look again at
        what you track. When the server sends event ids, the new connection carries
        ``Last-Event-ID`` and events it sends again are dropped; a server that also
        confirms the resume (its ``connected`` event carries that same id, as
        ``wrenn.local`` does) has sent everything in between, so that reconnect is no
        gap. The platform (API 0.2.2) sends no ids: there every reconnect is a gap.
        Iteration yields the same events as without reconnecting (unknown kinds
        included); gaps never appear in it.

        ``reconnect=False`` keeps the official SDK's behaviour: the stream ends when
        the server ends it, raises ``WrennStreamInterruptedError`` when the connection
        breaks and ``WrennStreamTimeoutError`` past ``idle_timeout``.
        """
        policy = None
        if reconnect:
            limit = optional_int(max_reconnects, "max_reconnects", minimum=1)
            assert limit is not None
            policy = _Policy(
                limit,
                positive_seconds(reconnect_timeout, "reconnect_timeout"),
                positive_seconds(reconnect_delay, "reconnect_delay"),
                on_gap,
            )
        elif on_gap is not None:
            raise ValueError(
                "on_gap needs reconnect (the default): a stream that does not reconnect has no gaps"
            )
        return AsyncEventStream(self, positive_seconds(idle_timeout, "idle_timeout"), policy)

    async def wait_for(
        self,
        capsule_id: str,
        status: str | Iterable[str] = "running",
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
    ) -> Capsule:
        """Wait until a capsule reaches ``status``; the same wait as ``capsules.wait_for``."""
        return await self._client.capsules.wait_for(capsule_id, status, timeout=timeout)


class _Policy:
    def __init__(
        self,
        max_attempts: int,
        timeout: float,
        delay: float,
        on_gap: Callable[[EventStreamGap], object] | None,
    ) -> None:
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.delay = delay
        self.on_gap = on_gap


class _Outage:
    """A drop being recovered from: since when, why, and the attempts made."""

    def __init__(self, reason: str, cause: BaseException | None) -> None:
        self.reason = reason
        self.cause = cause
        self.started = time.monotonic()
        self.dropped_at = utcnow()
        self.attempts = 0


class AsyncEventStream(AsyncResponseStream):
    """An open (or lazily opened) server-sent event stream yielding ``SSEEvent`` objects."""

    def __init__(
        self, resource: AsyncEvents, idle_timeout: float, policy: _Policy | None = None
    ) -> None:
        self._resource = resource
        self._idle_timeout = idle_timeout
        self._policy = policy
        self._response: httpx.Response | None = None
        self._chunks: AsyncIterator[bytes] | None = None
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._decoder = SSEDecoder()
        self._pending: deque[ServerSentEvent] = deque()
        self._finished = False
        self._interrupted = False
        self._wake = AsyncNotice()
        self._outage: _Outage | None = None
        self._unproductive: _Outage | None = None  # reconnects that brought no event yet
        self._backoff = Backoff(policy.delay if policy is not None else DEFAULT_RECONNECT_DELAY)
        self._seen = SeenIds()
        self._replaying = False
        self._resume_id: str | None = None
        self._held_gap: EventStreamGap | None = None  # reported unless the resume is confirmed
        self._retry_ms: int | None = None
        self.gaps: deque[EventStreamGap] = deque(maxlen=KEPT_GAPS)
        self.duplicates = 0
        self._reconnects = 0

    @property
    def interrupted(self) -> bool:
        """Whether ``interrupt()`` ended this stream (rather than the server or the network)."""
        return self._interrupted

    @property
    def reconnects(self) -> int:
        """How many times this stream reconnected, gaps or not."""
        return self._reconnects

    def interrupt(self) -> None:
        """Shut the connection down, from any thread, so that a read blocked on it returns.

        For a blocking reader on another thread, which closing alone would not wake. The
        reader then sees the stream break; ``interrupted`` tells it that was on purpose.
        A reconnecting stream waiting to reconnect stops waiting.
        """
        self._interrupted = True
        self._wake.give()
        response = self._response
        network = response.extensions.get("network_stream") if response is not None else None
        sock = network.get_extra_info("socket") if network is not None else None
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    @property
    def last_event_id(self) -> str | None:
        """The id of the last event received, for resuming elsewhere."""
        current = self._decoder.last_event_id
        return current if current is not None else self._resume_id

    async def _open(self) -> None:
        headers = dict(_SSE_HEADERS)
        resume = self.last_event_id
        if self._outage is not None and resume is not None:
            headers["Last-Event-ID"] = resume
        self._response = await self._resource._stream(
            "GET",
            "/v1/events/stream",
            headers=headers,
            idle_timeout=self._idle_timeout,
        )
        self._chunks = self._response.aiter_bytes()

    async def __anext__(self) -> SSEEvent:
        while True:
            if self._pending:
                raw = self._pending.popleft()
                if self._is_duplicate(raw):
                    continue
                return _parse(raw)
            if self._finished:
                raise StopAsyncIteration
            if self._chunks is None:
                if self._outage is None:
                    await self._open()
                else:
                    await self._reopen(self._outage)
            if self._interrupted:
                # Checked after the response is stored: an interrupt that came before it
                # could shut no socket down, so it is honoured here instead.
                await self.aclose()
                raise StopAsyncIteration
            if self._resource._closed or self._chunks is None:
                await self.aclose()
                raise WrennClientClosedError(
                    "client_closed", "the client was closed while the stream was open"
                )
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                self._pending.extend(self._decoder.feed(self._text.decode(b"", final=True)))
                self._pending.extend(self._decoder.close())
                if self._may_reconnect():
                    await self._dropped("the server ended the stream", None)
                else:
                    await self.aclose()
                continue
            except httpx.TimeoutException as exc:
                if self._may_reconnect():
                    await self._dropped("idle timeout", exc)
                    continue
                await self.aclose()
                raise WrennStreamTimeoutError(
                    f"no data from the event stream for {self._idle_timeout:g} s"
                ) from exc
            except httpx.TransportError as exc:
                if self._may_reconnect():
                    await self._dropped(type(exc).__name__, exc)
                    continue
                last_id = self.last_event_id
                await self.aclose()
                raise WrennStreamInterruptedError(
                    f"the event stream broke: {type(exc).__name__}", last_event_id=last_id
                ) from exc
            self._pending.extend(self._decoder.feed(self._text.decode(chunk)))

    # --- reconnecting ------------------------------------------------------------------

    def _may_reconnect(self) -> bool:
        return self._policy is not None and not self._interrupted and not self._resource._closed

    def _is_duplicate(self, raw: ServerSentEvent) -> bool:
        """Whether a resumed connection re-sends this event; remembers the ids it sees.

        Only the first events after a reconnect can be re-sent ones: the replay of a
        server that honours ``Last-Event-ID`` ends at the first id not seen before.
        The first event after a resumed reconnect also settles whether it was a gap.
        """
        if self._held_gap is not None:
            gap, self._held_gap = self._held_gap, None
            if raw.event != _CONNECTED or raw.id != gap.last_event_id:
                self._report(gap)  # the server did not confirm it resumed there
        if raw.event == _CONNECTED:
            # Never a re-sent event: its id, if any, says where this connection
            # continues from, and is no event's id.
            return False
        self._unproductive = None  # a real event: the connection is good again
        self._backoff.reset()
        if raw.id is None:
            self._replaying = False
            return False
        fresh = self._seen.add(raw.id)
        if self._replaying and not fresh:
            self.duplicates += 1
            return True
        self._replaying = False
        return False

    async def _dropped(self, reason: str, cause: BaseException | None) -> None:
        """Let the broken connection go; the next read reconnects."""
        self._resume_id = self.last_event_id
        if self._decoder.retry is not None:
            self._retry_ms = self._decoder.retry
        response, self._response = self._response, None
        chunks, self._chunks = self._chunks, None
        if response is not None:
            await response.aclose()
        if chunks is not None:
            await finish_iterator(chunks)
        self._held_gap = None  # the outage goes on; the next connection settles it
        self._outage = self._unproductive or _Outage(reason, cause)
        self._outage.reason = reason
        self._outage.cause = cause

    async def _reopen(self, outage: _Outage) -> None:
        """Connect again, with backoff, within the policy's bounds."""
        policy = self._policy
        assert policy is not None
        while True:
            if outage.attempts >= policy.max_attempts:
                await self._give_up(outage, f"{outage.attempts} attempts")
            delay = self._backoff.next(self._retry_ms)
            if time.monotonic() + delay - outage.started > policy.timeout:
                await self._give_up(outage, f"{policy.timeout:g} s")
            await self._wake.wait(delay)
            if self._interrupted or self._resource._closed:
                return  # the read loop ends the stream
            outage.attempts += 1
            try:
                await self._open()
            except (WrennConnectionError, WrennStreamError) as exc:
                outage.cause = exc
                continue
            except WrennAPIStatusError as exc:
                status = exc.status_code or 0
                if status == 429 or status >= 500:
                    outage.cause = exc
                    continue
                await self.aclose()
                raise  # 401, 403, 404, ...: it will not get better
            break
        self._reconnects += 1
        self._outage = None
        self._unproductive = outage  # until an event arrives, this drop is not over
        self._replaying = True
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._decoder = SSEDecoder()
        gap = EventStreamGap(
            reason=outage.reason,
            dropped_at=outage.dropped_at,
            resumed_at=utcnow(),
            attempts=outage.attempts,
            last_event_id=self._resume_id,
            resumable=self._resume_id is not None,
        )
        if gap.resumable:
            # A server that resumes where asked says so in its ``connected`` event;
            # until that (or another) event arrives the gap is only possible.
            self._held_gap = gap
        else:
            self._report(gap)

    def _report(self, gap: EventStreamGap) -> None:
        self.gaps.append(gap)
        policy = self._policy
        if policy is not None and policy.on_gap is not None:
            policy.on_gap(gap)

    async def _give_up(self, outage: _Outage, bound: str) -> None:
        last_id = self.last_event_id
        await self.aclose()
        error = WrennStreamInterruptedError(
            f"the event stream broke ({outage.reason}) and could not be reopened within {bound}",
            last_event_id=last_id,
        )
        raise error from outage.cause


def _parse(event: ServerSentEvent) -> SSEEvent:
    try:
        return sse_event_decoder.decode(event.data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise WrennStreamError(
            "invalid_event", f"malformed {event.event!r} event from the server: {exc}"
        ) from exc
