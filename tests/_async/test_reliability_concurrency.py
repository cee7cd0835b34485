"""RELIABILITY.md §3 C/D, the rows every runtime shares: CL-05, CC-01, CC-04.

The single-runtime rows (task cancellation, threads, fork, parity) live in
``tests/reliability/``.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import httpx
import pytest

from tests.faultserver import FaultServer
from tests.reliability.fixtures import (
    CID,
    KEY,
    SleepRecorder,
    agather,
    in_flight,
    pool_connections,
    running_fault_server,
    timed,
    watch_event_loop,
)
from wrenn import AsyncWrennClient, WrennClientClosedError, WrennError
from wrenn._async.commands import AsyncCommands
from wrenn._async.files import AsyncFiles
from wrenn._models import Capsule

pytestmark = pytest.mark.anyio

_UNARY_FAULTS = [
    "ok",
    "status-400",
    "status-404",
    "status-429",
    "status-500",
    "status-503",
    "reset",
    "drop",
    "truncated",
    "hang",
    "hangbody",
    "drip",
    "badjson",
    "html200",
    "html502-pad",
    "empty200",
    "null200",
    "wrongtype",
    "huge-32",
    "errstr",
    "echo400",
    "redirect",
]
_STREAM_FAULTS = ["sse-ok", "sse-bad", "sse-drop", "wstrunc", "wsclose", "wsbadjson", "reset"]


@pytest.fixture(scope="module")
def srv() -> Iterator[FaultServer]:
    with running_fault_server(hang_limit=10.0) as server:
        yield server


def sharing(client: AsyncWrennClient, url: str) -> AsyncWrennClient:
    """A view of ``client`` (same pool, same budget) aimed at another scenario."""
    options = client.options
    view = AsyncWrennClient(
        api_key=KEY,
        base_url=url,
        timeout=options.timeout,
        max_retries=options.max_retries,
        total_timeout=options.total_timeout,
    )
    view._requester = client._requester
    view._init_resources()
    return view


async def test_CL05_every_fault_leaves_the_pool_clean(
    srv: FaultServer, sleeps: SleepRecorder
) -> None:
    loop_reports = watch_event_loop()  # asyncio debug mode, like PYTHONASYNCIODEBUG=1
    limits = httpx.Limits(max_connections=10, max_keepalive_connections=5)
    client = AsyncWrennClient(
        api_key=KEY,
        base_url=srv.url_for("ok"),
        limits=limits,
        timeout=httpx.Timeout(5.0, read=0.2),
        total_timeout=0.6,
        max_retries=0,  # retries are not the point here: every fault is met once
    )
    for scenario in _UNARY_FAULTS:
        try:
            await sharing(client, srv.url_for(scenario)).capsules.get(CID)
        except WrennError:
            pass
        assert in_flight(client.http) == 0, scenario
        assert pool_connections(client.http) <= 5, scenario
    for scenario in _STREAM_FAULTS:
        view = sharing(client, srv.url_for(scenario))
        try:
            if scenario.startswith("sse"):
                async with view.events.stream(reconnect=False) as events:
                    async for _ in events:
                        pass
            elif scenario.startswith("ws"):
                async with AsyncCommands(view, CID).stream("true") as stream:
                    async for _ in stream:
                        pass
            else:
                async with AsyncFiles(view, CID).download_stream("/a") as download:
                    async for _ in download:
                        pass
        except WrennError:
            pass
        assert in_flight(client.http) == 0, scenario
    # A stream still open when the client closes fails typed on its next read.
    stream = sharing(client, srv.url_for("sse-keepalive-10")).events.stream(idle_timeout=5.0)
    await stream.__aenter__()
    await client.aclose()
    with pytest.raises(WrennClientClosedError):
        await stream.__anext__()
    await stream.aclose()
    assert srv.wait_until(lambda: srv.open_connections() == 0, timeout=2.0)
    gc.collect()
    assert loop_reports == []


async def test_CC01_500_concurrent_calls_against_a_fault_mix(srv: FaultServer) -> None:
    url = srv.url_for("mixhang")
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=20)
    elapsed = timed()
    async with AsyncWrennClient(
        api_key=KEY, base_url=url, limits=limits, timeout=httpx.Timeout(10.0, read=2.0)
    ) as client:
        results = await agather([lambda: client.capsules.get(CID) for _ in range(500)])
        assert in_flight(client.http) == 0
    assert elapsed() < 60
    untyped = [r for r in results if not isinstance(r, (Capsule, WrennError))]
    assert untyped == []
    assert sum(isinstance(r, Capsule) for r in results) >= 450
    assert srv.max_concurrent_connections(url) <= 20
    assert srv.wait_until(lambda: srv.open_connections(url) == 0, timeout=2.0)


async def test_CC04_the_pool_limit_bounds_server_connections(srv: FaultServer) -> None:
    url = srv.url_for("slow-0.02")
    limits = httpx.Limits(max_connections=5, max_keepalive_connections=5)
    async with AsyncWrennClient(api_key=KEY, base_url=url, limits=limits) as client:
        results = await agather([lambda: client.capsules.get(CID) for _ in range(100)])
    assert all(isinstance(r, Capsule) for r in results)
    assert srv.max_concurrent_connections(url) == 5
    url = srv.url_for("slow-0.02")
    async with AsyncWrennClient(api_key=KEY, base_url=url) as client:
        results = await agather([lambda: client.capsules.get(CID) for _ in range(100)])
    assert all(isinstance(r, Capsule) for r in results)
    assert srv.max_concurrent_connections(url) <= 20
