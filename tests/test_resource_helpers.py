"""The resource base class's per-call options: ``timeout`` and ``extra_headers``.

In-process only: the client sends through an ``httpx.MockTransport``.
"""

from __future__ import annotations

import httpx

from tests.helpers import API_KEY
from wrenn import WrennClient


def _client(seen: list[httpx.Request]) -> WrennClient:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[])

    http = httpx.Client(transport=httpx.MockTransport(answer))
    return WrennClient(
        api_key=API_KEY,
        base_url="http://127.0.0.1:9",
        http_client=http,
        default_headers={"X-Default": "d"},
        timeout=httpx.Timeout(7.0),
    )


def test_per_call_timeout_and_extra_headers_apply_to_that_call_only() -> None:
    seen: list[httpx.Request] = []
    with _client(seen) as client:
        client.capsules._get("/v1/capsules", timeout=3.0, extra_headers={"X-Extra": "e"})
        client.capsules._get("/v1/capsules")
    first, second = seen
    assert first.headers["X-Extra"] == "e"
    assert first.headers["X-Default"] == "d"
    assert first.extensions["timeout"]["read"] == 3.0
    assert "X-Extra" not in second.headers
    assert second.extensions["timeout"]["read"] == 7.0
    assert first.headers["X-API-Key"] == API_KEY


def test_extra_headers_override_the_calls_own() -> None:
    seen: list[httpx.Request] = []
    with _client(seen) as client:
        client.capsules._post(
            "/v1/x",
            content=b"{}",
            headers={"Content-Type": "application/json", "X-A": "1"},
            extra_headers={"X-A": "2"},
        )
    assert seen[0].headers["X-A"] == "2"
    assert seen[0].headers["Content-Type"] == "application/json"
