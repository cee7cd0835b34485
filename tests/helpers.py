"""Helpers shared by the async tests and their generated sync twins."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

API_KEY = "wrn_0123456789abcdef0123456789abcdef"
BASE_URL = "http://127.0.0.1:9/api"

CAPSULE = {
    "id": "cl-0k3x9a8b7c6d5e4f3g2h1i0j9",
    "status": "running",
    "template": "minimal",
    "vcpus": 1,
    "memory_mb": 512,
    "timeout_sec": 0,
    "created_at": "2026-11-28T10:00:00Z",
    "started_at": "2026-11-28T10:00:01Z",
    "last_updated": "2026-11-28T10:00:01Z",
}
TEMPLATE = {
    "name": "my-snapshot",
    "type": "snapshot",
    "vcpus": 1,
    "memory_mb": 512,
    "size_bytes": 1024,
    "created_at": "2026-11-28T10:00:00Z",
    "platform": False,
}


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status,
        content=json.dumps(body).encode() + b"\n",
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return json_response(status, {"error": {"code": code, "message": message}}, headers)


@dataclass
class Recorder:
    """A MockTransport handler that records requests and answers from a script.

    ``routes`` maps "METHOD /path" (path without the base URL's prefix) to a response,
    a list of responses (one per attempt, the last one repeats) or a callable.
    """

    routes: dict[str, Any] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path.startswith("/api"):
            path = path[len("/api") :]
        key = f"{request.method} {path}"
        answer = self.routes.get(key)
        if answer is None:
            return error_response(404, "not_found", f"no route for {key}")
        if isinstance(answer, list):
            index = min(sum(1 for r in self.requests if _key(r) == key) - 1, len(answer) - 1)
            answer = answer[index]
        if callable(answer) and not isinstance(answer, httpx.Response):
            answer = answer(request)
        assert isinstance(answer, httpx.Response)
        return answer

    def count(self, key: str) -> int:
        return sum(1 for r in self.requests if _key(r) == key)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def _key(request: httpx.Request) -> str:
    path = request.url.path
    if path.startswith("/api"):
        path = path[len("/api") :]
    return f"{request.method} {path}"


def no_sleep_factory() -> Callable[[float], None]:
    def no_sleep(seconds: float) -> None:
        return None

    return no_sleep
