"""The request path's shortcuts give the same results as the long way, and leave no garbage."""

from __future__ import annotations

import subprocess
import sys
import urllib.parse

import httpx
import pytest

from wrenn import AsyncWrennClient, WrennClient
from wrenn._config import RETRY_COUNT_HEADER, USER_AGENT
from wrenn._netbackend.asyncio_streams import AsyncioStream
from wrenn._urls import _SAFE, path_param
from wrenn.local import LocalServer

_NO_GARBAGE = r"""
import asyncio, gc, sys, wrenn
key, url = sys.argv[1], sys.argv[2]

def garbage_of(calls):
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        calls()
        return gc.collect()
    finally:
        gc.set_debug(0)
        gc.garbage.clear()

with wrenn.WrennClient(api_key=key, base_url=url) as client:
    client.capsules.list()
    print("sync", garbage_of(lambda: [client.capsules.list() for _ in range(5)]))

async def main():
    async with wrenn.AsyncWrennClient(api_key=key, base_url=url) as client:
        await client.capsules.list()
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for _ in range(5):
                await client.capsules.list()
            print("asyncio", gc.collect())
        finally:
            gc.set_debug(0)
            gc.garbage.clear()

asyncio.run(main())
"""


def test_a_call_leaves_no_cyclic_garbage(local_server: LocalServer) -> None:
    # httpx links a response and its body stream in a cycle; a call that left it would
    # feed the garbage collector on every request. Run in a process of its own: the
    # server's thread here makes garbage of its own.
    done = subprocess.run(
        [sys.executable, "-c", _NO_GARBAGE, local_server.api_key, local_server.base_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["sync", "0", "asyncio", "0"]


@pytest.mark.parametrize(
    "value", ["cl-abc123", "a", "A_b-9", "x" * 200, "my-snapshot_2", "0", "-", "_"]
)
def test_plain_ids_are_their_own_encoding(value: str) -> None:
    assert path_param(value, "id") == urllib.parse.quote(value, safe=_SAFE) == value


@pytest.mark.parametrize("value", ["", " ", ".", "..", "a\n", "%2e", "a/b", "é"])
def test_other_values_still_take_the_long_way(value: str) -> None:
    try:
        encoded = path_param(value, "id")
    except ValueError:
        return
    assert encoded == urllib.parse.quote(value, safe=_SAFE) and encoded != value


@pytest.mark.parametrize("default_headers", [None, {"X-Team": "t1"}])
def test_our_headers_are_the_same_on_both_header_paths(
    default_headers: dict[str, str] | None,
) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[])

    http = httpx.Client(transport=httpx.MockTransport(answer))
    with WrennClient(
        api_key="wrn_k",
        base_url="https://wrenn.test",
        http_client=http,
        default_headers=default_headers,
    ) as client:
        client.capsules.list()
    (request,) = seen
    assert request.headers["User-Agent"] == USER_AGENT
    assert request.headers[RETRY_COUNT_HEADER] == "0"
    assert request.headers.get("X-Team") == (default_headers or {}).get("X-Team")
    assert [k.lower() for k in request.headers].count("user-agent") == 1
    http.close()


@pytest.mark.anyio
async def test_the_owned_pool_speaks_asyncio_natively(
    local_server: LocalServer, anyio_backend: str
) -> None:
    async with AsyncWrennClient(
        api_key=local_server.api_key, base_url=local_server.base_url
    ) as client:
        await client.capsules.list()
        pool = client._requester._client._transport._pool  # type: ignore[attr-defined]
        (connection,) = pool.connections
        stream = connection._connection._network_stream
        # trio keeps httpcore's own stream; asyncio gets ours.
        assert isinstance(stream, AsyncioStream) == (anyio_backend == "asyncio")
        assert stream.get_extra_info("is_readable") is False  # idle, still open
        await client.capsules.list()  # and it is reused
        assert pool.connections == [connection]
