"""The SDK's exceptions, under the official SDK's module path."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from ._error_mapping import error_from_response
from ._exceptions import *  # noqa: F403
from ._exceptions import WrennHostHasCapsulesError, WrennResponseValidationError
from ._exceptions import __all__ as _names

# Every exception and warning of the SDK (``wrenn._exceptions`` lists them), and the
# official SDK's helper.
__all__ = [*_names, "handle_response"]


def __getattr__(name: str) -> Any:
    if name in ("WrennHostHasSandboxesError",):
        import warnings

        warnings.warn(
            "WrennHostHasSandboxesError is deprecated; use WrennHostHasCapsulesError",
            DeprecationWarning,
            stacklevel=2,
        )
        return WrennHostHasCapsulesError
    raise AttributeError(f"module 'wrenn.exceptions' has no attribute {name!r}")


def _raise_for_status(resp: httpx.Response) -> None:
    """Raise the typed error for a 4xx/5xx response (the official SDK's private helper).

    The response body must already be read.
    """
    if resp.status_code >= 400:
        raise error_from_response(
            resp.status_code, resp.headers, resp.content, scrub=lambda text: text
        )


def handle_response(resp: httpx.Response) -> dict[str, Any] | list[Any]:
    """Raise the typed error for an error response, else return its decoded JSON body.

    Kept for code written against the official SDK; the clients do this internally.
    The response body must already be read.
    """
    if resp.status_code >= 300:
        raise error_from_response(
            resp.status_code, resp.headers, resp.content, scrub=lambda text: text
        )
    if not resp.content:
        return {}
    try:
        body = msgspec.json.decode(resp.content)
    except msgspec.DecodeError as exc:
        raise WrennResponseValidationError(
            "invalid_response", f"the response is not valid JSON: {exc}", resp.status_code
        ) from exc
    if not isinstance(body, (dict, list)):
        raise WrennResponseValidationError(
            "invalid_response", "the response is not a JSON object or array", resp.status_code
        )
    return body
