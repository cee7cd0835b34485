"""From what went wrong on the wire to the SDK's exception classes.

Pure mapping with no I/O, shared by the async and the sync requester (and the websocket
and code runner paths) and tested once (tests/test_error_mapping.py): an error status
becomes a ``WrennAPIError`` subclass (``error_from_response``), an httpx transport
failure a ``WrennConnectionError`` or ``WrennTimeoutError`` that says whether the
request may have reached the server, and the SDK's own bounds their timeout errors.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping

import httpx
import msgspec

from ._constants import ERROR_BODY_EXCERPT
from ._exceptions import (
    WrennAgentError,
    WrennAPIStatusError,
    WrennAuthenticationError,
    WrennConflictError,
    WrennConnectionError,
    WrennForbiddenError,
    WrennGatewayTimeoutError,
    WrennHostHasCapsulesError,
    WrennHostUnavailableError,
    WrennInternalError,
    WrennNotFoundError,
    WrennPayloadTooLargeError,
    WrennRateLimitError,
    WrennRedirectError,
    WrennResponseTooLargeError,
    WrennTimeoutError,
    WrennValidationError,
)

__all__ = [
    "attempt_expired",
    "deadline_passed_reading",
    "error_from_response",
    "pool_wait_expired",
    "too_large",
    "transport_error",
]


def transport_error(
    exc: httpx.TransportError,
    method: str,
    path: str,
    scrub: Callable[[str], str],
    request: httpx.Request | None = None,
) -> WrennConnectionError:
    """Map an httpx transport failure to our error, noting whether the request left.

    ``request``: the request that failed, for the httpx error (our error's cause) to
    name when it does not yet, as it does when it comes through httpx's client; an
    error from the SDK's own transport (``AsyncTransport.direct``) comes without it.
    """
    if request is not None:
        try:
            exc.request  # noqa: B018 (httpx raises RuntimeError when it has none)
        except RuntimeError:
            exc.request = request
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


# --- error statuses: the Wrenn envelope's code first, the HTTP status second

_BY_CODE: dict[str, type[WrennAPIStatusError]] = {
    "invalid_request": WrennValidationError,
    "unauthorized": WrennAuthenticationError,
    "forbidden": WrennForbiddenError,
    "no_team": WrennForbiddenError,
    "account_deactivated": WrennForbiddenError,
    "not_found": WrennNotFoundError,
    "invalid_state": WrennConflictError,
    "conflict": WrennConflictError,
    "name_reserved": WrennConflictError,
    "template_name_taken": WrennConflictError,
    "host_has_sandboxes": WrennHostHasCapsulesError,
    "host_has_capsules": WrennHostHasCapsulesError,
    "has_active_sandboxes": WrennHostHasCapsulesError,
    "too_large": WrennPayloadTooLargeError,
    "rate_limited": WrennRateLimitError,
    "internal_error": WrennInternalError,
    "db_error": WrennInternalError,
    "read_error": WrennInternalError,
    "agent_error": WrennAgentError,
    "host_unavailable": WrennHostUnavailableError,
    "no_hosts_available": WrennHostUnavailableError,
}

_BY_STATUS: dict[int, type[WrennAPIStatusError]] = {
    400: WrennValidationError,
    401: WrennAuthenticationError,
    403: WrennForbiddenError,
    404: WrennNotFoundError,
    409: WrennConflictError,
    413: WrennPayloadTooLargeError,
    422: WrennValidationError,
    429: WrennRateLimitError,
    500: WrennInternalError,
    502: WrennAgentError,
    503: WrennHostUnavailableError,
    504: WrennGatewayTimeoutError,
}


def _class_for(status: int, code: str | None) -> type[WrennAPIStatusError]:
    if 300 <= status < 400:
        return WrennRedirectError
    if code and code in _BY_CODE:
        return _BY_CODE[code]
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return WrennInternalError
    return WrennAPIStatusError


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > ERROR_BODY_EXCERPT:
        return text[:ERROR_BODY_EXCERPT] + f"... [{len(text) - ERROR_BODY_EXCERPT} more chars]"
    return text


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    *,
    scrub: Callable[[str], str],
) -> WrennAPIStatusError:
    """Build the typed error for an error or redirect response.

    Tolerates any body: the Wrenn envelope ``{"error": {"code", "message"}}``, a bare
    string, a list, HTML from a proxy, or nothing. ``scrub`` removes secrets (the API
    key) from any text taken from the body, since proxies echo request headers.
    """
    code: str | None = None
    message: str | None = None
    body: object = None
    capsule_ids: list[str] = []
    content_type = headers.get("content-type", "")
    if content:
        try:
            body = msgspec.json.decode(content)
        except msgspec.DecodeError:
            body = scrub(_excerpt(content.decode("utf-8", "replace")))
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            raw_code, raw_message = error.get("code"), error.get("message")
            code = raw_code if isinstance(raw_code, str) else None
            message = raw_message if isinstance(raw_message, str) else None
            ids = error.get("sandbox_ids") or error.get("capsule_ids")
        else:
            if isinstance(error, str):
                message = error
            elif isinstance(body.get("message"), str):
                message = body["message"]  # Jupyter's error shape, from a capsule's port
            ids = body.get("capsule_ids") or body.get("sandbox_ids")
        if isinstance(ids, list):
            capsule_ids = [str(i) for i in ids]
        body = _scrub_tree(body, scrub)
    elif isinstance(body, (list, int, float, bool)):
        body = _scrub_tree(body, scrub)
    if message is None:
        if isinstance(body, str) and body and "json" not in content_type:
            kind = content_type.split(";")[0].strip() or "no content type"
            message = f"HTTP {status} with a non-JSON body ({kind}): {body}"
        elif 300 <= status < 400:
            location = headers.get("location", "")
            message = f"unexpected redirect to {scrub(location)!r}; redirects are not followed"
        else:
            message = f"HTTP {status}"
    message = scrub(_excerpt(message))
    cls = _class_for(status, code)
    request_id = headers.get("x-request-id")
    if cls is WrennHostHasCapsulesError:
        return WrennHostHasCapsulesError(
            code, message, status, request_id=request_id, body=body, capsule_ids=capsule_ids
        )
    return cls(code, message, status, request_id=request_id, body=body)


def _scrub_tree(value: object, scrub: Callable[[str], str]) -> object:
    if isinstance(value, str):
        return scrub(value if len(value) <= ERROR_BODY_EXCERPT else _excerpt(value))
    if isinstance(value, dict):
        return {k: _scrub_tree(v, scrub) for k, v in list(value.items())[:50]}
    if isinstance(value, list):
        return [_scrub_tree(v, scrub) for v in value[:50]]
    return value
