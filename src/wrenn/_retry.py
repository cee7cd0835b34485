"""Retry policy: which failures are retried, how long to wait, and the retry budget.

Pure logic with no I/O, shared by the async and the sync client and tested once. This is
the one place a retry is decided: the requester asks ``transport_retry_delay`` after a
failed attempt and ``status_retry_delay`` after an error status, and sleeps for what
they return (``None``: raise).
"""

from __future__ import annotations

import email.utils
import math
import random
import threading
import time
from collections.abc import Mapping

from ._constants import (
    INITIAL_RETRY_DELAY,
    MAX_RETRY_AFTER,
    MAX_RETRY_DELAY,
    MAX_SANE_RETRY_AFTER,
    RETRY_BUDGET_TOKENS,
    RETRY_COST,
    RETRY_REFUND_ON_SUCCESS,
    TIMEOUT_RETRY_COST,
)
from ._deadline import fits
from ._exceptions import WrennConnectionError, WrennTimeoutError

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def is_idempotent(method: str) -> bool:
    return method.upper() in IDEMPOTENT_METHODS


def should_retry_status(method: str, status: int, headers: Mapping[str, str]) -> bool:
    """Decide whether an error status is worth another attempt.

    ``x-should-retry`` from the server wins either way. Idempotent methods retry
    408/429/5xx. A POST is retried only when the server says it rejected the request
    without acting on it: 429, or 503 that carries Retry-After.
    """
    hint = headers.get("x-should-retry", "").strip().lower()
    if hint == "true":
        return True
    if hint == "false":
        return False
    if status not in RETRYABLE_STATUSES:
        return False
    if is_idempotent(method):
        return True
    if status == 429:
        return True
    return status == 503 and ("retry-after" in headers or "retry-after-ms" in headers)


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Return the server-requested wait in seconds, or None when absent or unusable.

    Reads ``retry-after-ms``, then ``retry-after`` as seconds (floats allowed) or as an
    HTTP-date. Negative, non-finite, unparsable and absurd (over a day) values count
    as absent, so the normal backoff applies.
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            value = float(raw_ms) / 1000.0
        except (ValueError, OverflowError):
            value = math.nan
        if math.isfinite(value) and 0 <= value <= MAX_SANE_RETRY_AFTER:
            return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
    except (ValueError, OverflowError):
        value = math.nan
    if math.isfinite(value):
        return value if 0 <= value <= MAX_SANE_RETRY_AFTER else None
    try:
        parsed = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None or parsed.tzinfo is None:
        return None
    current = time.time() if now is None else now
    delay = max(0.0, parsed.timestamp() - current)
    return delay if delay <= MAX_SANE_RETRY_AFTER else None


def retry_after_too_long(delay: float | None) -> bool:
    """A wait longer than ``MAX_RETRY_AFTER`` means "not now": raise instead of sleeping."""
    return delay is not None and delay > MAX_RETRY_AFTER


def backoff_delay(retry_index: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: ``min(0.5 * 2**n, 8) * U[0.5, 1]``."""
    base = min(INITIAL_RETRY_DELAY * (2.0 ** min(retry_index, 16)), MAX_RETRY_DELAY)
    jitter = (rng or random).uniform(0.5, 1.0)
    return base * jitter


def retry_delay(retry_index: int, headers: Mapping[str, str] | None) -> float:
    """The wait before retry number ``retry_index`` (0-based): Retry-After if usable, else backoff."""
    if headers is not None:
        requested = parse_retry_after(headers)
        if requested is not None and 0 < requested <= MAX_RETRY_AFTER:
            return requested
    return backoff_delay(retry_index)


class RetryBudget:
    """A client-wide token bucket that stops retries during an outage.

    Each retry costs tokens (a timeout costs more); each success refunds a little.
    When the bucket is empty, failures are raised at once instead of multiplying the
    load on a struggling server. Thread-safe; no awaits happen while the lock is held.
    """

    def __init__(self, capacity: int = RETRY_BUDGET_TOKENS) -> None:
        self.capacity = capacity
        self._tokens = capacity
        self._lock = threading.Lock()

    @property
    def tokens(self) -> int:
        return self._tokens

    def acquire(self, *, timeout: bool = False) -> bool:
        cost = TIMEOUT_RETRY_COST if timeout else RETRY_COST
        with self._lock:
            if self._tokens < cost:
                return False
            self._tokens -= cost
            return True

    def refund(self, amount: int = RETRY_REFUND_ON_SUCCESS) -> None:
        if self._tokens >= self.capacity:
            # Full already (every success while nothing fails): nothing to add, so no
            # lock. A racing acquire() simply counts as having come after this refund.
            return
        with self._lock:
            self._tokens = min(self.capacity, self._tokens + amount)


def retryable_transport(error: WrennConnectionError, method: str) -> bool:
    """A failed attempt may be made again if the request is idempotent or never left."""
    if error.code in ("tls_error", "invalid_request_setup"):
        return False  # neither a bad certificate nor a malformed request improves by asking again
    return is_idempotent(method) or not error.request_sent


def transport_retry_delay(
    error: WrennConnectionError,
    method: str,
    attempt: int,
    max_retries: int,
    deadline: float | None,
    budget: RetryBudget,
) -> float | None:
    """The wait before retrying an attempt that failed in transport, or ``None`` to raise.

    Takes tokens from ``budget`` when it says yes (a timeout costs more).
    """
    if attempt >= max_retries or not retryable_transport(error, method):
        return None
    delay = retry_delay(attempt, None)
    if not fits(delay, deadline):
        return None
    if not budget.acquire(timeout=isinstance(error, WrennTimeoutError)):
        return None
    return delay


def status_retry_delay(
    method: str,
    status: int,
    headers: Mapping[str, str],
    retry_after: float | None,
    attempt: int,
    max_retries: int,
    deadline: float | None,
    budget: RetryBudget,
) -> float | None:
    """The wait before retrying a call answered with an error status, or ``None`` to raise.

    ``retry_after`` is ``parse_retry_after(headers)``, already read by the caller; a
    server asking for more than ``MAX_RETRY_AFTER`` is not waited for. Takes tokens from
    ``budget`` when it says yes.
    """
    if (
        not should_retry_status(method, status, headers)
        or retry_after_too_long(retry_after)
        or attempt >= max_retries
    ):
        return None
    delay = retry_delay(attempt, headers)
    if fits(delay, deadline) and budget.acquire():
        return delay
    return None
