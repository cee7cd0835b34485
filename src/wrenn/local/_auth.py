"""API-key check shared by HTTP routes (middleware) and WebSocket handlers."""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ._wire import ApiError

MISSING = "X-API-Key or Authorization: Bearer <token> required"

# The capsule port proxy's credential (see _proxy). It must match
# wrenn._code_runner.proxy_token, which the SDK's code runner sends; the two
# are kept apart because wrenn.local does not import the client SDK.
PROXY_TOKEN_HEADER = "x-wrenn-proxy-token"
_PROXY_TOKEN_CONTEXT = b"wrenn-capsule-proxy:"


def proxy_token(api_key: str, capsule_id: str) -> str:
    """The per-capsule proxy token: HMAC-SHA256 of the capsule id under the team key.

    It opens that one capsule's ports and nothing else, and the key cannot be
    recovered from it, so it is safe for it to reach the capsule itself.
    """
    digest = hmac.new(api_key.encode(), _PROXY_TOKEN_CONTEXT + capsule_id.encode(), "sha256")
    return digest.hexdigest()


def check_proxy_token(headers: Headers, api_key: str, capsule_id: str) -> bool:
    token = headers.get(PROXY_TOKEN_HEADER, "")
    return hmac.compare_digest(token.encode(), proxy_token(api_key, capsule_id).encode())


def check_key(headers: Headers, api_key: str) -> str | None:
    """None when authorised, else the 401 message."""
    key = headers.get("x-api-key")
    if key:  # an empty header counts as missing, as in Go's Header.Get(...) != ""
        return None if hmac.compare_digest(key.encode(), api_key.encode()) else "invalid API key"
    bearer = headers.get("authorization", "")
    if bearer.lower().startswith("bearer "):
        token = bearer[7:].strip()
        return (
            None
            if hmac.compare_digest(token.encode(), api_key.encode())
            else "invalid or expired token"
        )
    return MISSING


class ApiKeyMiddleware:
    """401 for every HTTP request under /v1/ without the right key (WebSockets check in-band)."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            problem = check_key(Headers(scope=scope), self.api_key)
            if problem is not None:
                await ApiError(401, "unauthorized", problem).response()(scope, receive, send)
                return
        await self.app(scope, receive, send)
