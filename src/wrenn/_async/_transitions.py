"""Waiting until a capsule's transition is over, for every caller of one client.

Each wait looks at the capsule (one GET), then sleeps until its next poll is due or
the event stream brings news of that capsule, whichever comes first. The event stream
is one subscription per client however many waits run (``capsules.wait_for`` and
every lifecycle wait share it), reconnected with backoff after a drop: the first wait that finds no
stream open carries one for as long as it waits (in a task beside it, or a thread in
the blocking client), and when it is done the next wait takes over. A server without
a usable stream (an old one, a proxy that buffers) is simply polled, with growing,
jittered delays. Events only wake waiters early: every verdict comes from a GET, so a
lost or late event costs time, never correctness.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from .._compat import AsyncBackground, AsyncCleanupScope, AsyncNotice
from .._constants import FEED_IDLE_TIMEOUT, FEED_RETRY_DELAY, HANDOVER_GAP
from .._exceptions import (
    WrennAuthenticationError,
    WrennCapsuleStateError,
    WrennError,
    WrennForbiddenError,
    WrennNotFoundError,
    WrennTimeoutError,
)
from .._lifecycle import PollDelays, Transition, Verdict
from .._logs import logger
from .._models_control import Capsule, SSEEvent
from .._reconnect import EventStreamGap

if TYPE_CHECKING:
    from .client import AsyncWrennClient
    from .events import AsyncEventStream


class _Wait:
    """One call's wait: what it waits for and what it has seen so far."""

    def __init__(
        self,
        capsule_id: str,
        transition: Transition,
        first: Capsule | None,
        timeout: float,
        max_delay: float | None,
    ) -> None:
        self.capsule_id = capsule_id
        self.transition = transition
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.delays = PollDelays(max_delay)
        self.notice = AsyncNotice()
        status = first.status.value if first is not None and first.status is not None else None
        self.seen_passing = status in transition.passing


class AsyncTransitionWaiter:
    """Settles capsule transitions for one client; see the module docstring."""

    def __init__(self, client: AsyncWrennClient) -> None:
        self._client = client
        self._lock = threading.Lock()  # held for bookkeeping only, never while waiting
        self._notices: dict[str, list[AsyncNotice]] = {}
        self._carrier: AsyncNotice | None = None
        self._stream: AsyncEventStream | None = None
        self._live = False
        self._disabled = False
        self._retry_at = 0.0
        self._failures: dict[str, str] = {}
        self._ended_at = float("-inf")  # when the last carried stream was let go

    @property
    def events_live(self) -> bool:
        """Whether an event stream is open and delivering right now."""
        return self._live

    async def settle(
        self,
        capsule_id: str,
        transition: Transition,
        first: Capsule | None,
        timeout: float,
        max_delay: float | None = None,
        also: tuple[str, ...] = (),
    ) -> Capsule | None:
        """Wait until the capsule shows the transition over and return it.

        ``first`` is the capsule as the call that started the transition answered, if
        it did. Events about the capsule, or about a resource named in ``also`` (a
        snapshot's template), wake this wait. Returns None when the capsule is gone and
        the transition counts that as done (destroy). Raises ``WrennCapsuleStateError`` when
        the capsule lands where the transition cannot end, and ``WrennTimeoutError``
        after ``timeout`` seconds. ``max_delay`` caps the time between two looks.
        """
        first_status = first.status.value if first is not None and first.status else None
        if transition.judge(first_status, False) is Verdict.DONE:
            return first  # a server that answered with the settled capsule
        keys = (capsule_id, *also)
        wait = _Wait(capsule_id, transition, first, timeout, max_delay)
        for key in keys:
            self._failures.pop(key, None)  # a failure reported before this call is not ours
        self._subscribe(keys, wait.notice)
        try:
            look_first = True
            while True:
                if self._claim_carrier(wait.notice):
                    try:
                        async with AsyncBackground(self._carry, self._interrupt):
                            result = await self._poll(wait, look_first, may_hand_over=False)
                            assert not isinstance(result, _Handover)
                            return result
                    finally:
                        self._release_carrier(wait.notice)
                result = await self._poll(wait, look_first, may_hand_over=True)
                if not isinstance(result, _Handover):
                    return result
                look_first = False  # it has just looked: the hand-over is about the stream
        finally:
            self._unsubscribe(keys, wait.notice)

    async def sleep(self, keys: tuple[str, ...], delay: float) -> None:
        """Sleep up to ``delay`` seconds, waking early on news of ``keys`` from a carried stream."""
        notice = AsyncNotice()
        self._subscribe(keys, notice)
        try:
            await notice.wait(delay)
        finally:
            self._unsubscribe(keys, notice)

    def failure_of(self, key: str) -> str | None:
        """The error an event reported for ``key`` (outcome ``error``), if one arrived."""
        return self._failures.get(key)

    async def _poll(
        self, wait: _Wait, look_first: bool, may_hand_over: bool
    ) -> Capsule | _Handover | None:
        """Look, judge, sleep until news or the next poll; again, until a verdict."""
        transition = wait.transition
        if not look_first:
            await wait.notice.wait(self._delay(wait))
        while True:
            try:
                capsule = await self._client.capsules.get(wait.capsule_id)
            except WrennNotFoundError:
                if not transition.gone_is_done:
                    raise
                return None
            status = capsule.status.value if capsule.status is not None else None
            verdict = transition.judge(status, wait.seen_passing)
            if verdict is Verdict.DONE:
                return capsule
            if verdict is Verdict.FAILED:
                reason = self._failures.get(capsule.id)
                raise WrennCapsuleStateError(
                    "unexpected_state",
                    f"capsule {capsule.id} is {status} after {transition.action}, "
                    f"not {transition.describe_targets()}" + (f": {reason}" if reason else ""),
                    capsule_id=capsule.id,
                    status=status,
                )
            if status in transition.passing:
                wait.seen_passing = True
            if time.monotonic() >= wait.deadline:
                raise WrennTimeoutError(
                    f"capsule {capsule.id}: {transition.action} did not finish within "
                    f"{wait.timeout:g} s (last status: {status or 'unknown'})"
                )
            await wait.notice.wait(self._delay(wait))
            if may_hand_over and self._carrier is None and self._feed_wanted():
                return _HANDOVER

    def _delay(self, wait: _Wait) -> float:
        return max(0.0, min(wait.delays.next(self._live), wait.deadline - time.monotonic()))

    # --- the shared event stream ------------------------------------------------------

    def _feed_wanted(self) -> bool:
        return not self._disabled and time.monotonic() >= self._retry_at

    def _claim_carrier(self, notice: AsyncNotice) -> bool:
        with self._lock:
            if self._carrier is not None or not self._feed_wanted():
                return False
            self._carrier = notice
            return True

    def _release_carrier(self, notice: AsyncNotice) -> None:
        with self._lock:
            if self._carrier is notice:
                self._carrier = None
            self._ended_at = time.monotonic()
            others = [n for group in self._notices.values() for n in group if n is not notice]
        if others:
            others[0].give()  # one other wait takes the stream over (the rest need not look)

    async def _carry(self) -> None:
        """Read the event stream and wake the waits each event concerns, until ended."""
        # A drop is reconnected (bounded); every gap makes all waits look again, since
        # the event that would have woken one may have been published during it.
        stream = self._client.events.stream(
            idle_timeout=FEED_IDLE_TIMEOUT, reconnect=True, on_gap=self._on_gap
        )
        self._stream = stream
        try:
            async for event in stream:
                if not self._live:
                    self._live = True
                    if time.monotonic() - self._ended_at > HANDOVER_GAP:
                        # Subscribed after a while without a stream: what changed before
                        # now is found by looking again. Right after a hand-over the gap
                        # was too short to matter, and the next safety poll covers it.
                        self._wake_all()
                self._dispatch(event)
            if not stream.interrupted:
                self._retry_at = time.monotonic() + FEED_RETRY_DELAY  # the server ended it
        except (WrennNotFoundError, WrennAuthenticationError, WrennForbiddenError) as exc:
            # This server (or this key) has no event stream: poll from now on.
            self._disabled = True
            logger.debug("event stream unavailable, waits will poll: %s", exc)
        except WrennError as exc:
            if not stream.interrupted:
                self._retry_at = time.monotonic() + FEED_RETRY_DELAY
                logger.debug("event stream ended, waits poll for now: %s", exc)
        except Exception:
            # A bug of ours must not break the waits: they still poll.
            self._disabled = True
            logger.warning("event stream reader failed, waits will poll", exc_info=True)
        finally:
            self._live = False
            self._stream = None
            with AsyncCleanupScope(1.0):
                await stream.aclose()

    def _on_gap(self, gap: EventStreamGap) -> None:
        logger.debug("event stream reconnected after %s; waits look again", gap.reason)
        self._wake_all()

    def _interrupt(self) -> None:
        """Make a blocked read of the stream return (the blocking client's carrier thread)."""
        stream = self._stream
        if stream is not None:
            stream.interrupt()

    def _dispatch(self, event: SSEEvent) -> None:
        keys = set()
        if event.resource is not None and event.resource.id:
            keys.add(event.resource.id)
        if event.sandbox is not None:
            keys.add(event.sandbox.id)
        for key in keys:
            if event.outcome is not None and event.outcome.value == "error":
                self._failures[key] = event.error or f"{event.event.value} failed"
                if len(self._failures) > 1024:
                    self._failures.pop(next(iter(self._failures)))
            for notice in tuple(self._notices.get(key, ())):
                notice.give()

    def _wake_all(self) -> None:
        with self._lock:
            notices = [n for group in self._notices.values() for n in group]
        for notice in notices:
            notice.give()

    def _subscribe(self, keys: tuple[str, ...], notice: AsyncNotice) -> None:
        with self._lock:
            for key in keys:
                self._notices.setdefault(key, []).append(notice)

    def _unsubscribe(self, keys: tuple[str, ...], notice: AsyncNotice) -> None:
        with self._lock:
            for key in keys:
                group = self._notices.get(key)
                if group is not None and notice in group:
                    group.remove(notice)
                    if not group:
                        del self._notices[key]


class _Handover:
    """A wait's poll ends early: nobody carries the event stream, so this wait may."""


_HANDOVER = _Handover()
