"""API-key check shared by HTTP routes (middleware) and WebSocket handlers."""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ._wire import ApiError

MISSING = "X-API-Key or Authorization: Bearer <token> required"


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
