"""The SDK's own calls on a client it built go straight to its transport (``direct``).

Checked over real loopback sockets: the key and headers still go along, a compressed
body is still decoded, a failure still names its request, and anything a caller can
attach to the httpx client (event hooks, proxies, a client of their own) puts the calls
back through ``client.send``.
"""

from __future__ import annotations

import socket

import httpx
import pytest

from tests._async.clients import client_for
from tests.reliability.fixtures import CID, KEY, StubServer
from wrenn import AsyncWrennClient, WrennConnectionError

pytestmark = pytest.mark.anyio

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def header_lines(head: bytes) -> list[str]:
    return [line.decode("latin-1").lower() for line in head.split(b"\r\n")[1:]]


async def test_a_direct_call_carries_the_key_and_the_clients_headers() -> None:
    with StubServer() as server:
        async with client_for(
            f"http://127.0.0.1:{server.port}", default_headers={"X-Team": "blue"}
        ) as client:
            assert client._requester.direct is not None
            assert (await client.capsules.get(CID)).id == CID
        lines = header_lines(server.heads[0])
        assert f"x-api-key: {KEY}".lower() in lines
        assert "x-team: blue" in lines
        assert any(line.startswith("user-agent: wrenn-python") for line in lines)
        assert any(line.startswith("accept-encoding: ") for line in lines)
        assert f"host: 127.0.0.1:{server.port}" in lines


async def test_a_compressed_body_is_decoded() -> None:
    with StubServer(gzip_body=True) as server:
        async with client_for(f"http://127.0.0.1:{server.port}") as client:
            assert client._requester.direct is not None
            assert (await client.capsules.get(CID)).id == CID


async def test_a_failed_direct_call_names_its_request() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with client_for(f"http://127.0.0.1:{port}", max_retries=0) as client:
        assert client._requester.direct is not None
        with pytest.raises(WrennConnectionError) as caught:
            await client.capsules.get(CID)
    cause = caught.value.__cause__
    assert isinstance(cause, httpx.ConnectError)
    assert cause.request.url == f"http://127.0.0.1:{port}/v1/capsules/{CID}"


async def test_an_event_hook_on_client_http_sees_the_sdks_calls() -> None:
    seen: list[str] = []

    async def on_response(response: httpx.Response) -> None:
        seen.append(f"{response.request.method} {response.request.url.path}")

    with StubServer() as server:
        async with client_for(f"http://127.0.0.1:{server.port}") as client:
            client.http.event_hooks["response"].append(on_response)
            assert client._requester.direct is None
            assert (await client.capsules.get(CID)).id == CID
        assert seen == [f"GET /v1/capsules/{CID}"]
        assert f"x-api-key: {KEY}".lower() in header_lines(server.heads[0])


async def test_a_proxy_from_the_environment_or_a_callers_client_is_not_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with StubServer() as server:
        url = f"http://127.0.0.1:{server.port}"
        async with (
            httpx.AsyncClient() as http,
            AsyncWrennClient(api_key=KEY, base_url=url, http_client=http) as client,
        ):
            assert client._requester.direct is None
            assert (await client.capsules.get(CID)).id == CID
        monkeypatch.setenv("HTTP_PROXY", url)
        async with client_for("http://127.0.0.2:9") as client:
            assert client._requester.direct is None
            assert (await client.capsules.get(CID)).id == CID
        assert server.request_lines[-1] == f"GET http://127.0.0.2:9/v1/capsules/{CID} HTTP/1.1"
