"""Deadline arithmetic of one API call: the call's deadline, each attempt's timeouts.

Pure logic with no I/O (only the monotonic clock), shared by the async and the sync
requester and tested once (tests/test_deadline.py). Every timeout a request is sent
with is computed here:

* the *call deadline* (``total_timeout``, lengthened for a call with a long read budget)
  bounds the whole call, retries included;
* the *phase timeouts* (connect, read, write, pool) of each attempt are the client's
  ``timeout``, with a longer read for such calls, shrunk to what is left of the deadline;
* the *attempt timeout* (a float ``timeout`` only) bounds one attempt's wall clock.
"""

from __future__ import annotations

import time

import httpx

from ._constants import LONG_CALL_SLACK
from ._exceptions import WrennTimeoutError


def call_deadline(
    started: float,
    total_timeout: float | None,
    read_timeout: float | None,
    connect_timeout: float | None,
) -> float | None:
    """The monotonic time the whole call must end by (``None``: no bound)."""
    if total_timeout is None:
        return None
    deadline = started + total_timeout
    if read_timeout is not None:
        # A call that legitimately takes long (a VM boot, an exec) gets a deadline
        # that fits its read budget instead of failing at the default.
        deadline = max(
            deadline, started + read_timeout + (connect_timeout or 0.0) + LONG_CALL_SLACK
        )
    return deadline


def phase_timeouts(timeout: httpx.Timeout, read_timeout: float | None) -> httpx.Timeout:
    """The client's phase timeouts, with the read phase lengthened to ``read_timeout``."""
    if read_timeout is None:
        return timeout
    return httpx.Timeout(
        connect=timeout.connect,
        read=max(read_timeout, timeout.read or 0.0),
        write=timeout.write,
        pool=timeout.pool,
    )


def attempt_timeout(
    client_attempt_timeout: float | None, read_timeout: float | None
) -> float | None:
    """One attempt's wall-clock bound: a float ``timeout`` (an ``httpx.Timeout`` bounds
    only each socket operation), plus a call's longer read budget on top."""
    if client_attempt_timeout is not None and read_timeout is not None:
        return client_attempt_timeout + read_timeout
    return client_attempt_timeout


def clamp(timeout: httpx.Timeout, deadline: float | None) -> httpx.Timeout:
    """Shrink every phase so that no single wait can outlive the call's deadline."""
    if deadline is None:
        return timeout
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise WrennTimeoutError(
            "the call deadline passed before the request could be sent", request_sent=False
        )

    def phase(value: float | None) -> float:
        return remaining if value is None else min(value, remaining)

    return httpx.Timeout(
        connect=phase(timeout.connect),
        read=phase(timeout.read),
        write=phase(timeout.write),
        pool=phase(timeout.pool),
    )


def with_idle_read(timeout: httpx.Timeout, idle_timeout: float | None) -> httpx.Timeout:
    """A stream's read phase is its idle bound exactly: the deadline bounds opening the
    stream, not how long it may stay open."""
    if idle_timeout is None:
        return timeout
    return httpx.Timeout(
        connect=timeout.connect, read=idle_timeout, write=timeout.write, pool=timeout.pool
    )


def pool_wait_window(
    pool_timeout: float | None, deadline: float | None, attempt_deadline: float | None
) -> float | None:
    """How long the next wait for a free connection may last (<= 0: no time is left).

    The pool timeout, cut to what is left of the call's deadline and of the attempt's.
    A waiter that saw connections come free during a window waits another one, so a
    busy pool that keeps moving is waited for until the deadline, and only a pool where
    nothing came free for a whole pool timeout fails (``AsyncTransport.take_slot``).
    """
    window = pool_timeout
    now = time.monotonic()
    for end in (deadline, attempt_deadline):
        if end is not None and (window is None or end - now < window):
            window = end - now
    return window


def attempt_deadline(attempt_timeout: float | None) -> float | None:
    """The monotonic time an attempt starting now must end by."""
    return None if attempt_timeout is None else time.monotonic() + attempt_timeout


def fits(delay: float, deadline: float | None) -> bool:
    """A retry whose wait would pass the deadline is not started."""
    return deadline is None or time.monotonic() + delay < deadline


def past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() > deadline
