"""From what went wrong on the wire to the SDK's exception classes.

Pure mapping with no I/O, shared by the async and the sync requester (and the websocket
and code runner paths) and tested once (tests/test_error_mapping.py): an error status
becomes a ``WrennAPIError`` subclass (``error_from_response``), an httpx transport
failure a ``WrennConnectionError`` or ``WrennTimeoutError`` that says whether the
request may have reached the server, and the SDK's own bounds their timeout errors.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

import httpx

from ._exceptions import (
    WrennConnectionError,
    WrennResponseTooLargeError,
    WrennTimeoutError,
)
from ._exceptions import error_from_response as error_from_response  # status -> error

__all__ = [
    "attempt_expired",
    "deadline_passed_reading",
    "error_from_response",
    "pool_wait_expired",
    "too_large",
    "transport_error",
]


def transport_error(
    exc: httpx.TransportError, method: str, path: str, scrub: Callable[[str], str]
) -> WrennConnectionError:
    """Map an httpx transport failure to our error, noting whether the request left."""
    where = f"{method} {path}"
    detail = scrub(str(exc)) or type(exc).__name__
    if isinstance(exc, httpx.ConnectTimeout):
        return WrennTimeoutError(f"{where}: timed out connecting to the server", request_sent=False)
    if isinstance(exc, httpx.PoolTimeout):
        return pool_wait_expired(method, path)
    if isinstance(exc, httpx.TimeoutException):
        return WrennTimeoutError(
            f"{where}: timed out waiting for the server ({type(exc).__name__})"
        )
    if isinstance(exc, httpx.ConnectError):
        if is_tls_failure(exc):
            error = WrennConnectionError(
                f"{where}: TLS verification failed: {detail}", request_sent=False
            )
            error.code = "tls_error"
            return error
        return WrennConnectionError(f"{where}: could not connect: {detail}", request_sent=False)
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
        error = WrennConnectionError(
            f"{where}: the request could not be sent: {detail}", request_sent=False
        )
        error.code = "invalid_request_setup"
        return error
    return WrennConnectionError(f"{where}: the connection failed: {detail}")


def is_tls_failure(exc: BaseException) -> bool:
    """Whether a connect failure was the server's certificate being refused."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if isinstance(current, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(current):
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


def pool_wait_expired(method: str, path: str) -> WrennTimeoutError:
    return WrennTimeoutError(
        f"{method} {path}: no connection became free in the pool in time", request_sent=False
    )


def attempt_expired(
    method: str, path: str, attempt_timeout: float | None, request_sent: bool
) -> WrennTimeoutError:
    return WrennTimeoutError(
        f"{method} {path}: the attempt did not finish within its timeout "
        f"({attempt_timeout or 0:g} s)",
        request_sent=request_sent,
    )


def deadline_passed_reading(method: str, path: str, *, attempt: bool) -> WrennTimeoutError:
    which = "the attempt's timeout" if attempt else "the call deadline"
    return WrennTimeoutError(f"{method} {path}: {which} passed while reading the response")


def too_large(status: int, limit: int) -> WrennResponseTooLargeError:
    return WrennResponseTooLargeError(
        "response_too_large",
        f"the response body exceeds max_response_bytes ({limit} bytes)",
        status,
    )
