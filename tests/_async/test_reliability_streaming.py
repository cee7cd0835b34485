"""RELIABILITY.md §3 H: streaming cleanup (ST-01 .. ST-05)."""

from __future__ import annotations

import threading

import pytest

from tests._async.clients import client_for
from tests.faultserver import FaultServer
from tests.reliability.fixtures import CID, in_flight
from wrenn import (
    WrennError,
    WrennNotFoundError,
    WrennStreamInterruptedError,
)
from wrenn._async.capsule import AsyncCapsule
from wrenn._async.commands import AsyncCommands
from wrenn._async.files import AsyncFiles

pytestmark = pytest.mark.anyio


async def test_ST01_breaking_out_of_an_event_stream_releases_the_connection(
    srv: FaultServer,
) -> None:
    url = srv.url_for("sse-keepalive-20")
    async with client_for(url) as client:
        async with client.events.stream() as events:
            assert in_flight(client.http) == 1
        assert in_flight(client.http) == 0  # at once: no checkpoint, no GC
        assert srv.wait_until(lambda: srv.open_connections(url) == 0, timeout=1.0)
        url2 = srv.url_for("sse-ok")
        other = client_for(url2)
        other._requester = client._requester
        other._init_resources()
        async with other.events.stream() as events:
            async for _ in events:
                break
        assert in_flight(client.http) == 0
    assert srv.wait_until(lambda: srv.open_connections(url2) == 0, timeout=1.0)


async def test_ST02_a_reset_event_stream_without_reconnect_raises_with_the_last_event_id(
    srv: FaultServer,
) -> None:
    async with client_for(srv.url_for("sse-drop")) as client:
        received = []
        with pytest.raises(WrennStreamInterruptedError) as info:
            async with client.events.stream(reconnect=False) as events:
                async for event in events:
                    received.append(event)
    assert len(received) == 2
    assert info.value.last_event_id == "2"


async def test_ST03_download_stream_faults(srv: FaultServer) -> None:
    async with client_for(srv.url_for("status-404")) as client:
        with pytest.raises(WrennNotFoundError):
            async with AsyncFiles(client, CID).download_stream("/a") as download:
                async for _ in download:
                    pass
    for scenario in ("reset", "truncated"):
        async with client_for(srv.url_for(scenario), max_retries=0) as client:
            received = b""
            with pytest.raises(WrennError):
                async with AsyncFiles(client, CID).download_stream("/a") as download:
                    async for chunk in download:
                        received += chunk
            assert in_flight(client.http) == 0
    async with client_for(srv.url_for("ok")) as client:
        async with AsyncFiles(client, CID).download_stream("/a") as download:
            async for _ in download:
                break
        assert in_flight(client.http) == 0


async def test_ST04_an_upload_stream_is_never_replayed(srv: FaultServer) -> None:
    class Body:
        """4 MiB in 64 KiB chunks, counting how often iteration starts."""

        def __init__(self) -> None:
            self.started = 0
            self.chunks = 0

        def __aiter__(self) -> Body:
            self.started += 1
            return self

        async def __anext__(self) -> bytes:
            if self.chunks >= 64:
                raise StopAsyncIteration
            self.chunks += 1
            return b"x" * 65536

    body = Body()

    url = srv.url_for("resetafter-1024")
    async with client_for(url) as client:
        with pytest.raises(WrennError):
            await AsyncFiles(client, CID).upload_stream("/big", body)
    assert srv.count(url) == 1
    assert body.started == 1 and body.chunks <= 64


@pytest.mark.parametrize("how", ["break", "exit"])
async def test_ST05_websocket_streams_closed_early_say_goodbye(srv: FaultServer, how: str) -> None:
    threads = set(threading.enumerate())
    url = srv.url_for("wsstream")
    async with client_for(url) as client:
        async with AsyncCommands(client, CID).stream("yes") as stream:
            if how == "break":
                async for _ in stream:
                    break
            else:
                await stream.__anext__()
        assert srv.wait_until(lambda: len(srv.ws_close_frames(url)) == 1, timeout=1.0)
        capsule = AsyncCapsule.__new__(AsyncCapsule)
        capsule._setup(CID, client, None)
        url_pty = srv.url_for("wsstream")
        pty_client = client_for(url_pty)
        pty_client._requester = client._requester
        pty_client._init_resources()
        capsule._setup(CID, pty_client, None)
        async with capsule.pty() as terminal:
            async for _ in terminal:
                break
        assert srv.wait_until(lambda: len(srv.ws_close_frames(url_pty)) == 1, timeout=1.0)
        assert in_flight(client.http) == 0
    # No thread of ours outlives the streams. Runtime helpers are not the SDK's: the
    # fault server's asyncio executor ("asyncio_N") and trio's cached worker threads
    # for name resolution ("Trio thread N") may start meanwhile.
    assert srv.wait_until(lambda: not _new_threads(threads), timeout=1.0), _new_threads(threads)


def _new_threads(before: set[threading.Thread]) -> list[str]:
    return [
        t.name
        for t in threading.enumerate()
        if t not in before and t.is_alive() and not t.name.startswith(("asyncio_", "Trio thread"))
    ]
