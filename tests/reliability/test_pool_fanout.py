"""Fan-out through one client's pool (issue #12, item 7): many more calls than connections.

Async only (asyncio and trio): 10,000 calls at once have no blocking equivalent, and
nor has cancelling queued calls mid-connect or mid-response. After each test the pool
must hold no request and no connection nobody owns, and a new call must go through.
Speed is measured in bench/ ("concurrent" scenarios), never here.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import httpx
import pytest

from tests.faultserver import FaultServer
from tests.reliability.fixtures import (
    CID,
    KEY,
    agather,
    in_flight,
    ownerless_connecting,
    pool_connections,
    running_fault_server,
)
from wrenn import AsyncWrennClient

pytestmark = pytest.mark.anyio

POOL = 20


@pytest.fixture(scope="module")
def srv() -> Iterator[FaultServer]:
    with running_fault_server(hang_limit=10.0) as server:
        yield server


def client_for(url: str, **options: object) -> AsyncWrennClient:
    limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
    return AsyncWrennClient(api_key=KEY, base_url=url, limits=limits, **options)  # type: ignore[arg-type]


async def check_healthy(client: AsyncWrennClient, ok_url: str) -> None:
    assert in_flight(client.http) == 0
    assert ownerless_connecting(client.http) == 0
    assert pool_connections(client.http) <= POOL
    # The same pool (a view sharing the client's requester) still serves a call.
    view = AsyncWrennClient(api_key=KEY, base_url=ok_url)
    view._requester = client._requester
    view._init_resources()
    with anyio.fail_after(10):
        assert (await view.capsules.get(CID)).id == CID


async def test_ten_thousand_concurrent_calls_all_succeed_on_a_small_pool(
    srv: FaultServer,
) -> None:
    url = srv.url_for("ok")
    async with client_for(url, total_timeout=None) as client:
        with anyio.fail_after(240):  # a bound on the test, not a speed check
            results = await agather([lambda: client.capsules.get(CID)] * 10_000)
        failures = [r for r in results if isinstance(r, Exception)]
        assert failures == []
        assert all(r.id == CID for r in results)  # type: ignore[union-attr]
        assert srv.count(url) == 10_000  # no call was retried
        assert pool_connections(client.http) <= POOL
        assert len({r.conn_id for r in srv.requests(url)}) <= POOL
        await check_healthy(client, url)


@pytest.mark.parametrize("scenario", ["connect", "response"])
async def test_queued_calls_cancelled_mid_connect_or_mid_response_leave_the_pool_clean(
    srv: FaultServer, scenario: str
) -> None:
    # connect: SYNs are dropped, so every connection stays CONNECTING; response: the
    # server reads each request and never answers.
    url = srv.backlog_full_url() if scenario == "connect" else srv.url_for("hang")
    async with client_for(url, max_retries=0) as client:
        with anyio.move_on_after(0.5) as scope:
            await agather([lambda: client.capsules.get(CID)] * (POOL * 5))
        assert scope.cancelled_caught
        await check_healthy(client, srv.url_for("ok"))
