"""Retry policy: which failures retry, Retry-After parsing, backoff bounds, the budget."""

from __future__ import annotations

import email.utils
import random
import statistics
import time

import pytest

from wrenn._retry import (
    RetryBudget,
    backoff_delay,
    parse_retry_after,
    retry_after_too_long,
    retry_delay,
    should_retry_status,
)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT"])
def test_idempotent_methods_retry_transient_statuses(method: str, status: int) -> None:
    assert should_retry_status(method, status, {})


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422])
def test_client_errors_never_retry(status: int) -> None:
    assert not should_retry_status("GET", status, {})


def test_post_retries_only_when_the_server_rejected_it() -> None:
    assert should_retry_status("POST", 429, {})
    assert should_retry_status("POST", 503, {"retry-after": "1"})
    assert not should_retry_status("POST", 503, {})
    assert not should_retry_status("POST", 502, {})
    assert not should_retry_status("POST", 500, {})


def test_should_retry_header_wins() -> None:
    assert not should_retry_status("GET", 503, {"x-should-retry": "false"})
    assert should_retry_status("POST", 500, {"x-should-retry": "true"})


def test_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "1500"}) == 1.5
    now = time.time()
    date = email.utils.formatdate(now + 2, usegmt=True)
    value = parse_retry_after({"retry-after": date}, now=now)
    assert value is not None and 1.0 <= value <= 2.0


@pytest.mark.parametrize(
    "raw", ["-10", "abc", "", "99999999999999999999e999", "nan", "inf", "Mon, 99 Foo 2026"]
)
def test_unusable_retry_after_values_never_raise(raw: str) -> None:
    value = parse_retry_after({"retry-after": raw})
    assert value is None or value >= 0
    delay = retry_delay(0, {"retry-after": raw})
    assert 0 < delay <= 8.0


def test_past_date_means_no_wait() -> None:
    past = email.utils.formatdate(time.time() - 3600, usegmt=True)
    assert parse_retry_after({"retry-after": past}) == 0.0
    assert 0 < retry_delay(0, {"retry-after": past}) <= 0.5  # falls back to backoff


def test_huge_values_are_too_long_to_sleep() -> None:
    assert retry_after_too_long(parse_retry_after({"retry-after": "3600"}))
    # RB-07: an absurd value is garbage, not a plan: ignored, so the backoff applies.
    assert parse_retry_after({"retry-after": "99999999999999999999"}) is None
    assert not retry_after_too_long(parse_retry_after({"retry-after": "60"}))


def test_backoff_bounds_and_jitter() -> None:
    rng = random.Random(1)
    for n in range(8):
        cap = min(0.5 * 2**n, 8.0)
        for _ in range(50):
            delay = backoff_delay(n, rng)
            assert 0.5 * cap <= delay <= cap
    first = [backoff_delay(0, rng) for _ in range(200)]
    assert statistics.stdev(first) > 0.02
    assert backoff_delay(10_000, rng) <= 8.0


def test_budget_drains_and_refills() -> None:
    budget = RetryBudget(capacity=20)
    assert budget.acquire()  # 5
    assert budget.acquire(timeout=True)  # 10
    assert budget.acquire()  # 5
    assert not budget.acquire()
    for _ in range(5):
        budget.refund()
    assert budget.acquire()
    for _ in range(100):
        budget.refund()
    assert budget.tokens == 20
