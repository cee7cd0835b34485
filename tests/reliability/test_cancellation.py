"""RELIABILITY.md §3 C, the rows tied to one runtime: CL-01/CL-06/CL-07 (asyncio),
CL-02 (trio), CL-03 and ST-05's task-cancel case (asyncio and trio)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import anyio
import pytest

from tests.faultserver import FaultServer
from tests.reliability.fixtures import CID, KEY, in_flight, running_fault_server
from wrenn import AsyncWrennClient, WrennTimeoutError, WrennUsageError
from wrenn._async import _requester
from wrenn._async.commands import AsyncCommands

pytestmark = pytest.mark.anyio
asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])
trio_only = pytest.mark.parametrize("anyio_backend", ["trio"])


@pytest.fixture(scope="module")
def srv() -> Iterator[FaultServer]:
    with running_fault_server(hang_limit=10.0) as server:
        yield server


def client_for(url: str, **options: object) -> AsyncWrennClient:
    return AsyncWrennClient(api_key=KEY, base_url=url, **options)  # type: ignore[arg-type]


@asyncio_only
async def test_CL01_asyncio_task_cancel_propagates_unwrapped(srv: FaultServer) -> None:
    url = srv.url_for("hangfirst-1")
    async with client_for(url) as client:
        task = asyncio.ensure_future(client.capsules.get(CID))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert in_flight(client.http) == 0
        assert await srv.await_until(lambda: srv.open_connections(url) == 0, timeout=1.0)
        assert (await client.capsules.get(CID)).id == CID


@trio_only
async def test_CL02_trio_move_on_after_cancels_cleanly(srv: FaultServer) -> None:
    url = srv.url_for("hangfirst-1")
    async with client_for(url) as client:
        with anyio.move_on_after(0.5) as scope:
            await client.capsules.get(CID)
        assert scope.cancelled_caught
        assert in_flight(client.http) == 0
        assert (await client.capsules.get(CID)).id == CID
        url2 = srv.url_for("hangfirst-1")
        other = client_for(url2)
        other._requester = client._requester
        other._init_resources()
        async with anyio.create_task_group() as group:
            group.start_soon(other.capsules.get, CID)
            await anyio.sleep(0.5)
            group.cancel_scope.cancel()
        assert in_flight(client.http) == 0
        assert (await other.capsules.get(CID)).id == CID


async def test_CL03_cancel_during_backoff_stops_all_attempts(srv: FaultServer) -> None:
    url = srv.url_for("flaky-reset-5")
    async with client_for(url) as client:
        with anyio.move_on_after(0.15) as scope:
            await client.capsules.get(CID)
        assert scope.cancelled_caught
        assert srv.count(url) == 1
        await anyio.sleep(2.0)
        assert srv.count(url) == 1


@asyncio_only
async def test_CL06_external_timeouts_are_not_api_timeouts(srv: FaultServer) -> None:
    async with client_for(srv.url_for("hang")) as client:
        with pytest.raises(asyncio.TimeoutError) as info:
            await asyncio.wait_for(client.capsules.get(CID), 0.5)
        assert not isinstance(info.value, WrennTimeoutError)
        task = asyncio.ensure_future(client.capsules.get(CID))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert in_flight(client.http) == 0


# Leaving a client unclosed leaks its sockets: asyncio's own transports warn about
# that when collected. What this row checks is that the SDK adds nothing on top.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_CL07_one_client_across_two_asyncio_runs(srv: FaultServer) -> None:
    client = client_for(srv.url_for("ok"))

    async def call() -> str:
        return (await client.capsules.get(CID)).id

    assert asyncio.run(call()) == CID
    with pytest.raises(WrennUsageError):  # typed, never "Event loop is closed"
        asyncio.run(call())

    # An unclosed client whose loop has ended is collected without scheduling tasks.
    async def leave_open() -> None:
        stray = client_for(srv.url_for("ok"))
        await stray.capsules.get(CID)

    asyncio.run(leave_open())
    del call
    client = None  # drop the last reference to the unclosed client
    gc.collect()

    async def collect() -> int:
        before = len(asyncio.all_tasks())
        gc.collect()
        await asyncio.sleep(0)
        return len(asyncio.all_tasks()) - before

    assert asyncio.run(collect()) == 0
    assert not hasattr(AsyncWrennClient, "__del__")
    assert not hasattr(_requester.AsyncRequester, "__del__")


async def test_ST05_task_cancel_closes_websocket_streams(
    srv: FaultServer, anyio_backend: str
) -> None:
    tasks_before = len(asyncio.all_tasks()) if anyio_backend == "asyncio" else 0
    url = srv.url_for("wsstream")
    async with client_for(url) as client:
        with anyio.move_on_after(0.4):
            async with AsyncCommands(client, CID).stream("yes") as stream:
                async for _ in stream:
                    pass
        assert await srv.await_until(lambda: len(srv.ws_close_frames(url)) == 1, timeout=1.0)
        assert in_flight(client.http) == 0
    if anyio_backend == "asyncio":  # the pull-based WebSocket leaves no task behind
        assert len(asyncio.all_tasks()) == tasks_before
