"""The pure parts of the request path, tested once for both clients (no I/O).

Request building (``wrenn._request``), deadline arithmetic (``wrenn._deadline``), the
retry decision (``wrenn._retry``) and error mapping (``wrenn._error_mapping``).
"""

from __future__ import annotations

import ssl
import time

import httpx
import pytest

from wrenn import _deadline
from wrenn._config import RETRY_COUNT_HEADER, USER_AGENT, resolve_options
from wrenn._error_mapping import (
    attempt_expired,
    deadline_passed_reading,
    is_tls_failure,
    too_large,
    transport_error,
)
from wrenn._exceptions import (
    WrennConnectionError,
    WrennResponseTooLargeError,
    WrennTimeoutError,
)
from wrenn._request import build_bare_request, build_request, parsed_url
from wrenn._retry import (
    RetryBudget,
    retryable_transport,
    status_retry_delay,
    transport_retry_delay,
)

KEY = "wrn_" + "a" * 32


def _options(**kwargs: object):  # type: ignore[no-untyped-def]
    return resolve_options(
        api_key=KEY,
        base_url="http://127.0.0.1:9/api",
        proxy_domain=None,
        timeout=kwargs.pop("timeout", None),
        total_timeout=120.0,
        max_retries=2,
        default_headers=kwargs.pop("default_headers", None),
        max_response_bytes=None,
        allow_insecure_http=False,
    )


# --- request building ------------------------------------------------------------------


def test_build_request_sets_our_headers_timeout_and_url() -> None:
    options = _options()
    with httpx.Client() as client:
        timeout = httpx.Timeout(3.0)
        request = build_request(
            client,
            options,
            "GET",
            options.url("/v1/capsules"),
            2,
            timeout,
            params={"a": "b"},
            content=None,
            files=None,
            data=None,
            headers=None,
        )
    assert request.url == httpx.URL("http://127.0.0.1:9/api/v1/capsules?a=b")
    assert request.headers["User-Agent"] == USER_AGENT
    assert request.headers[RETRY_COUNT_HEADER] == "2"
    assert request.extensions["timeout"] == timeout.as_dict()
    assert "X-API-Key" not in request.headers  # added by the auth flow as it is sent


def test_a_bare_request_carries_only_the_calls_headers() -> None:
    # For a capsule's port: built without the httpx client, so none of its default
    # headers or cookies (a caller's client may have both) and no default_headers.
    timeout = httpx.Timeout(2.0)
    request = build_bare_request(
        "POST",
        "http://127.0.0.1:9/api/kernels",
        0,
        timeout,
        params=None,
        content=b"{}",
        headers={"X-Wrenn-Proxy-Token": "t"},
    )
    assert dict(request.headers) == {
        "user-agent": USER_AGENT,
        "x-wrenn-proxy-token": "t",
        RETRY_COUNT_HEADER.lower(): "0",
        "host": "127.0.0.1:9",
        "content-length": "2",
    }
    assert request.extensions["timeout"] == timeout.as_dict()
    assert request.content == b"{}"


def test_build_request_merges_default_and_call_headers_in_order() -> None:
    options = _options(default_headers={"X-A": "1", "X-B": "1"})
    with httpx.Client() as client:
        request = build_request(
            client,
            options,
            "POST",
            options.url("/v1/x"),
            0,
            httpx.Timeout(1.0),
            params=None,
            content=b"{}",
            files=None,
            data=None,
            headers={"X-B": "2"},
        )
    assert request.headers["X-A"] == "1"
    assert request.headers["X-B"] == "2"
    assert request.headers[RETRY_COUNT_HEADER] == "0"
    assert request.content == b"{}"


def test_parsed_url_is_cached_and_invalid_urls_raise() -> None:
    assert parsed_url("http://127.0.0.1/a") is parsed_url("http://127.0.0.1/a")
    with pytest.raises(httpx.InvalidURL):
        parsed_url("http://[::1")


# --- deadlines ---------------------------------------------------------------------------


def test_call_deadline_grows_for_a_long_read_budget() -> None:
    assert _deadline.call_deadline(100.0, None, 600.0, 5.0) is None
    assert _deadline.call_deadline(100.0, 120.0, None, 5.0) == 220.0
    assert _deadline.call_deadline(100.0, 120.0, 600.0, 5.0) == 100.0 + 600 + 5 + 5
    assert _deadline.call_deadline(100.0, 120.0, 1.0, 5.0) == 220.0


def test_phase_and_attempt_timeouts() -> None:
    base = httpx.Timeout(10.0)
    assert _deadline.phase_timeouts(base, None) is base
    assert _deadline.phase_timeouts(base, 60.0).read == 60.0
    assert _deadline.phase_timeouts(base, 1.0).read == 10.0
    assert _deadline.attempt_timeout(None, 60.0) is None
    assert _deadline.attempt_timeout(10.0, None) == 10.0
    assert _deadline.attempt_timeout(10.0, 60.0) == 70.0


def test_clamp_shrinks_every_phase_to_the_deadline_and_refuses_a_past_one() -> None:
    timeout = httpx.Timeout(30.0, pool=None)
    assert _deadline.clamp(timeout, None) is timeout
    clamped = _deadline.clamp(timeout, time.monotonic() + 2.0)
    for value in (clamped.connect, clamped.read, clamped.write, clamped.pool):
        assert value is not None and 0 < value <= 2.0
    with pytest.raises(WrennTimeoutError) as caught:
        _deadline.clamp(timeout, time.monotonic() - 1.0)
    assert caught.value.request_sent is False


def test_idle_read_fits_and_attempt_deadline() -> None:
    timeout = httpx.Timeout(5.0)
    assert _deadline.with_idle_read(timeout, None) is timeout
    assert _deadline.with_idle_read(timeout, 90.0).read == 90.0
    assert _deadline.fits(1.0, None)
    assert not _deadline.fits(5.0, time.monotonic() + 1.0)
    assert _deadline.attempt_deadline(None) is None
    assert _deadline.attempt_deadline(1.0) > time.monotonic()  # type: ignore[operator]


# --- the retry decision --------------------------------------------------------------------


def test_transport_retry_only_when_safe_and_in_budget() -> None:
    sent = WrennConnectionError("x", request_sent=True)
    unsent = WrennConnectionError("x", request_sent=False)
    assert retryable_transport(sent, "GET")
    assert not retryable_transport(sent, "POST")
    assert retryable_transport(unsent, "POST")
    tls = WrennConnectionError("x", request_sent=False)
    tls.code = "tls_error"
    assert not retryable_transport(tls, "GET")

    budget = RetryBudget()
    assert transport_retry_delay(sent, "GET", 0, 2, None, budget) is not None
    assert transport_retry_delay(sent, "GET", 2, 2, None, budget) is None  # out of retries
    assert transport_retry_delay(sent, "POST", 0, 2, None, budget) is None
    assert transport_retry_delay(sent, "GET", 0, 2, time.monotonic() + 0.01, budget) is None
    empty = RetryBudget(capacity=0)
    assert transport_retry_delay(sent, "GET", 0, 2, None, empty) is None


def test_status_retry_honours_retry_after_and_budget() -> None:
    budget = RetryBudget()
    delay = status_retry_delay("GET", 503, {"retry-after": "1"}, 1.0, 0, 2, None, budget)
    assert delay == 1.0
    assert status_retry_delay("GET", 404, {}, None, 0, 2, None, budget) is None
    assert status_retry_delay("POST", 500, {}, None, 0, 2, None, budget) is None
    assert status_retry_delay("GET", 503, {}, 3600.0, 0, 2, None, budget) is None  # too long
    assert status_retry_delay("GET", 503, {}, None, 2, 2, None, budget) is None
    assert status_retry_delay("GET", 503, {}, None, 0, 2, None, RetryBudget(capacity=0)) is None


# --- error mapping -------------------------------------------------------------------------


def _scrub(text: str) -> str:
    return text.replace(KEY, "***")


@pytest.mark.parametrize(
    ("exc", "kind", "sent", "code"),
    [
        (httpx.ConnectTimeout("t"), WrennTimeoutError, False, None),
        (httpx.PoolTimeout("t"), WrennTimeoutError, False, None),
        (httpx.ReadTimeout("t"), WrennTimeoutError, True, None),
        (httpx.ConnectError("refused"), WrennConnectionError, False, None),
        (httpx.UnsupportedProtocol("x"), WrennConnectionError, False, "invalid_request_setup"),
        (httpx.RemoteProtocolError("x"), WrennConnectionError, True, None),
    ],
)
def test_transport_errors_map_to_our_classes(
    exc: httpx.TransportError, kind: type, sent: bool, code: str | None
) -> None:
    error = transport_error(exc, "GET", "/v1/x", _scrub)
    assert type(error) is kind
    assert error.request_sent is sent
    assert "GET /v1/x" in error.message
    if code is not None:
        assert error.code == code


def test_tls_failures_and_secrets_in_messages() -> None:
    cause = ssl.SSLCertVerificationError("CERTIFICATE_VERIFY_FAILED")
    exc = httpx.ConnectError("boom")
    exc.__cause__ = cause
    assert is_tls_failure(exc)
    assert transport_error(exc, "GET", "/", _scrub).code == "tls_error"
    leaky = httpx.ConnectError(f"failed with {KEY}")
    assert KEY not in transport_error(leaky, "GET", "/", _scrub).message


def test_our_own_bounds_have_errors_of_their_own() -> None:
    assert attempt_expired("GET", "/", 2.0, False).request_sent is False
    assert "2 s" in attempt_expired("GET", "/", 2.0, True).message
    assert "attempt" in deadline_passed_reading("GET", "/", attempt=True).message
    assert "call deadline" in deadline_passed_reading("GET", "/", attempt=False).message
    error = too_large(200, 10)
    assert isinstance(error, WrennResponseTooLargeError)
    assert error.code == "response_too_large"


def test_pool_wait_window_is_the_pool_timeout_cut_to_the_deadlines() -> None:
    now = time.monotonic()
    assert _deadline.pool_wait_window(10.0, None, None) == 10.0
    assert _deadline.pool_wait_window(None, None, None) is None
    window = _deadline.pool_wait_window(10.0, now + 2.0, None)
    assert window is not None and 0 < window <= 2.0
    window = _deadline.pool_wait_window(None, now + 5.0, now + 1.0)
    assert window is not None and 0 < window <= 1.0
    window = _deadline.pool_wait_window(10.0, now - 1.0, None)
    assert window is not None and window <= 0
