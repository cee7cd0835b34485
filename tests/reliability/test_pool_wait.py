"""A busy pool that keeps moving is waited for until the call's deadline.

Many concurrent calls on a small pool queue for its connections. While connections
keep coming free the queue moves, so a call waits for its turn within its deadline
instead of failing at the fixed pool timeout; only a pool where nothing comes free
for a whole pool timeout fails fast.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator

import anyio
import httpx
import pytest

from tests.faultserver import FaultServer
from tests.reliability.fixtures import CID, KEY, running_fault_server
from wrenn import AsyncWrennClient, WrennClient, WrennTimeoutError
from wrenn._async.files import AsyncFiles

pytestmark = pytest.mark.anyio

POOL = 2
CALLS = 48
ANSWER_AFTER = 0.1  # the server's time per call: CALLS / POOL * 0.1 s = 2.4 s of queue
# Below the queue's length, yet far above the server's time per call: the fault server
# shares this process (and its GIL and garbage collector) with the test, so on a busy
# machine both connections can come free late. At 0.3 s a pause of 0.2 s read as a
# stuck pool (CI, Python 3.13, trio); a pool that moves must never fail here.
POOL_TIMEOUT = 1.0
HELD_FOR = 4  # seconds the two held calls keep the pool busy in the last test


@pytest.fixture(scope="module")
def srv() -> Iterator[FaultServer]:
    with running_fault_server() as server:
        yield server


def _settings(srv: FaultServer, scenario: str) -> dict[str, object]:
    return {
        "api_key": KEY,
        "base_url": srv.url_for(scenario),
        "limits": httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL),
        "timeout": httpx.Timeout(5.0, pool=POOL_TIMEOUT),
        "max_retries": 0,  # every call must succeed on its one attempt
    }


async def test_queued_calls_wait_past_the_pool_timeout_while_the_pool_moves(
    srv: FaultServer,
) -> None:
    results: list[str] = []

    async def call(client: AsyncWrennClient) -> None:
        results.append((await client.capsules.get(CID)).id)

    started = time.monotonic()
    async with AsyncWrennClient(**_settings(srv, f"slow-{ANSWER_AFTER}")) as client:  # type: ignore[arg-type]
        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                for _ in range(CALLS):
                    group.start_soon(call, client)
    assert results == [CID] * CALLS
    assert time.monotonic() - started > POOL_TIMEOUT * 2  # the queue outlasted the timeout


async def test_queued_streams_wait_past_the_pool_timeout_while_the_pool_moves(
    srv: FaultServer,
) -> None:
    """Streams queue where calls queue: a stream holds its slot until it is closed, so
    none waits inside httpcore's pool, whose fixed pool timeout fires on a moving queue."""
    bodies: list[bytes] = []

    async def download(client: AsyncWrennClient) -> None:
        async with AsyncFiles(client, CID).download_stream("/f") as stream:
            bodies.append(b"".join([chunk async for chunk in stream]))

    async with AsyncWrennClient(**_settings(srv, f"slow-{ANSWER_AFTER}")) as client:  # type: ignore[arg-type]
        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                for _ in range(CALLS):
                    group.start_soon(download, client)
                for _ in range(CALLS // 4):  # unary calls in the same queue
                    group.start_soon(client.capsules.get, CID)
    assert len(bodies) == CALLS and len(set(bodies)) == 1 and bodies[0]


def test_queued_threads_wait_past_the_pool_timeout_while_the_pool_moves(
    srv: FaultServer,
) -> None:
    with (
        WrennClient(**_settings(srv, f"slow-{ANSWER_AFTER}")) as client,  # type: ignore[arg-type]
        concurrent.futures.ThreadPoolExecutor(CALLS) as threads,
    ):
        futures = [threads.submit(client.capsules.get, CID) for _ in range(CALLS)]
        assert [f.result(timeout=30).id for f in futures] == [CID] * CALLS


async def test_a_pool_that_does_not_move_still_fails_at_the_pool_timeout(
    srv: FaultServer,
) -> None:
    """Both connections held by calls that answer only after HELD_FOR s: nothing comes
    free within the pool timeout, so a third call fails then, long before they end."""
    failures: list[float] = []

    async def held(client: AsyncWrennClient) -> None:
        await client.capsules.get(CID)

    async def queued(client: AsyncWrennClient) -> None:
        started = time.monotonic()
        with pytest.raises(WrennTimeoutError, match="no connection became free"):
            await client.capsules.get(CID)
        failures.append(time.monotonic() - started)

    async with AsyncWrennClient(**_settings(srv, f"slow-{HELD_FOR}")) as client:  # type: ignore[arg-type]
        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                for _ in range(POOL):
                    group.start_soon(held, client)
                await anyio.sleep(0.1)
                group.start_soon(queued, client)
    assert len(failures) == 1
    assert failures[0] < HELD_FOR - 1  # it failed, it did not get a freed slot
