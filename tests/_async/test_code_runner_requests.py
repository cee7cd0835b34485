"""The code runner's Jupyter calls go through the client's request path, on its terms.

No credentials towards the capsule (seen by a loopback server that records headers),
no retries and no draw on the retry budget while Jupyter starts (the code runner polls),
the cell's deadline rather than the client's ``total_timeout``, and the SDK's own errors.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from tests.faultserver import FaultServer
from tests.helpers import API_KEY, BASE_URL, CAPSULE, json_response
from tests.reliability.fixtures import SleepRecorder
from wrenn import (
    AsyncWrennClient,
    WrennInternalError,
    WrennNotFoundError,
    WrennResponseTooLargeError,
    WrennResponseValidationError,
    WrennTimeoutError,
)
from wrenn._async import _jupyter
from wrenn._code_runner import JUPYTER_PORT, PROXY_TOKEN_HEADER, proxy_token
from wrenn._compat import asleep
from wrenn.code_runner import AsyncCapsule

pytestmark = pytest.mark.anyio

Jupyter = Callable[[httpx.Request], httpx.Response]


@asynccontextmanager
async def capsule_with_jupyter(
    jupyter: Jupyter, http_options: dict[str, object] | None = None, **options: object
) -> AsyncIterator[AsyncCapsule]:
    """A code-runner capsule whose API answers come from a script, and whose Jupyter
    answers (requests to the capsule's port) come from ``jupyter``. The httpx client is
    the caller's (``http_client=``), built with ``http_options``."""

    async def answer(request: httpx.Request) -> httpx.Response:
        if request.headers["host"].startswith(f"{JUPYTER_PORT}-"):
            response = jupyter(request)
            if isinstance(response, httpx.Response):
                return response
            return await response  # type: ignore[no-any-return]
        return json_response(200, CAPSULE)

    http = httpx.AsyncClient(transport=httpx.MockTransport(answer), **(http_options or {}))  # type: ignore[arg-type]
    options = {"api_key": API_KEY, "base_url": BASE_URL, "http_client": http, **options}
    async with http, AsyncWrennClient(**options) as client:  # type: ignore[arg-type]
        capsule = await AsyncCapsule.connect(CAPSULE["id"], client=client)
        try:
            yield capsule
        finally:
            await capsule.aclose()


async def test_no_key_and_no_client_headers_go_to_the_capsule_even_on_the_apis_origin(
    srv: FaultServer,
) -> None:
    # The fault server's address is the port proxy's too (as on wrenn.local), so only
    # the explicit "no credentials" of these calls keeps the key at home.
    api = srv.url_for("ok")
    capsule_id = f"cl-{api.rsplit('-n', 1)[1]}"  # the scenario's nonce: one id per test
    async with AsyncWrennClient(
        api_key=API_KEY, base_url=api, default_headers={"X-Team-Secret": "s3cret"}
    ) as client:
        capsule = await AsyncCapsule.connect(capsule_id, client=client)
        capsule._kernel_id = "k1"  # a kernel known from before: its WebSocket comes first
        with pytest.raises(WrennNotFoundError):  # the fault server runs no Jupyter
            await capsule.run_code("1", jupyter_timeout=10)
        await capsule.aclose()
    to_api = srv.requests(api)
    assert to_api and all(
        r.header("X-API-Key") == API_KEY and r.header("X-Team-Secret") == "s3cret" for r in to_api
    )
    to_capsule = [
        r for r in srv.requests() if (r.header("Host") or "").startswith(f"8888-{capsule_id}.")
    ]
    # The kernel's WebSocket (the fault server takes any upgrade, and ends it unheard),
    # the question whether that kernel is gone (404: yes), then the kernel list (404).
    assert [r.path for r in to_capsule] == [
        "/api/kernels/k1/channels",
        "/api/kernels/k1",
        "/api/kernels",
    ]
    assert to_capsule[0].header("Upgrade") == "websocket"
    for request in to_capsule:
        assert request.header("X-API-Key") is None and request.header("X-Team-Secret") is None
        assert request.header("Authorization") is None
        assert request.header(PROXY_TOKEN_HEADER) == proxy_token(API_KEY, capsule_id)


async def test_a_callers_http_client_lends_its_pool_but_not_its_headers_or_cookies() -> None:
    seen: list[httpx.Headers] = []

    def jupyter(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return json_response(200, [{"id": "k1", "name": "wrenn"}])

    caller = {"headers": {"Authorization": "Bearer caller"}, "cookies": {"session": "s"}}
    async with capsule_with_jupyter(jupyter, caller) as capsule:
        assert await capsule._ensure_kernel(time.monotonic() + 30) == "k1"
    (headers,) = seen
    assert "authorization" not in headers and "cookie" not in headers
    assert "x-api-key" not in headers and PROXY_TOKEN_HEADER in headers


async def test_jupyter_starting_up_is_polled_by_the_code_runner_not_retried(
    sleeps: SleepRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_jupyter, "KERNEL_POLL_INTERVAL", 0.01)
    calls: list[str] = []
    # What a starting server does, in turn: refuse, drop, reset, then the proxy's 50x.
    failures: list[type[httpx.TransportError] | int] = [
        httpx.ConnectError,
        httpx.RemoteProtocolError,
        httpx.ReadError,
        502,
        503,
        504,
    ]

    def starting(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        if failures:
            failure = failures.pop(0)
            if isinstance(failure, int):
                return httpx.Response(failure)
            raise failure("not ready", request=request)
        if request.method == "GET":
            return json_response(200, [])
        return json_response(201, {"id": "k1", "name": "wrenn"})

    async with capsule_with_jupyter(starting, max_retries=5) as capsule:
        budget = capsule.client._requester.budget
        assert await capsule._ensure_kernel(time.monotonic() + 30) == "k1"
    # Each "not ready" was asked once and then polled again by the code runner: the
    # client's retries (five here) never ran and its retry budget was not drawn on.
    assert calls == ["GET /api/kernels"] * 7 + ["POST /api/kernels"]
    assert sleeps.delays == []
    assert budget.tokens == budget.capacity


async def test_jupyter_starting_up_is_waited_for_within_jupyter_timeout() -> None:
    calls: list[str] = []

    def starting(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(503, text="starting")

    async with capsule_with_jupyter(starting) as capsule:
        with pytest.raises(WrennTimeoutError, match="not available in time") as caught:
            await capsule.run_code("1", jupyter_timeout=1.2)
        assert isinstance(caught.value, TimeoutError)
        assert 2 <= len(calls) <= 5  # asked again every 0.5 s, not in a tight loop


async def test_a_jupyter_call_has_the_cells_deadline_not_the_clients_total_timeout() -> None:
    async def slow_start(request: httpx.Request) -> httpx.Response:
        await asleep(0.6)  # longer than the client's total_timeout
        if request.method == "GET":
            return json_response(200, [])
        return json_response(201, {"id": "k1"})

    async with capsule_with_jupyter(slow_start, total_timeout=0.3) as capsule:  # type: ignore[arg-type]
        assert await capsule._ensure_kernel(time.monotonic() + 30) == "k1"


async def test_a_jupyter_answer_is_read_within_the_cells_deadline() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asleep(0.6)
        return json_response(200, [])

    async with capsule_with_jupyter(slow) as capsule:  # total_timeout: the 120 s default
        with pytest.raises(WrennTimeoutError):
            await capsule._ensure_kernel(time.monotonic() + 0.3)


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        (httpx.Response(500, json={"message": "kernel spec broken"}), WrennInternalError, "broken"),
        (httpx.Response(200, text="<html>"), WrennResponseValidationError, "non-JSON"),
        (
            httpx.Response(201, json={"name": "wrenn"}),
            WrennResponseValidationError,
            "without an id",
        ),
        # Whatever runs in the capsule cannot make the client buffer without bound.
        (httpx.Response(201, content=b" " * (2 << 20)), WrennResponseTooLargeError, "exceeds"),
    ],
)
async def test_jupyter_errors_are_the_sdks_own(
    answer: httpx.Response, error: type[Exception], match: str
) -> None:
    def jupyter(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and answer.status_code != 200:
            return httpx.Response(200, json=[])  # no kernel yet: the next step starts one
        return answer

    async with capsule_with_jupyter(jupyter) as capsule:
        with pytest.raises(error, match=match):
            await capsule.run_code("1")
