"""CL-04: the httpcore pool-poisoning regression (RELIABILITY.md §1.4, §2.3 #56).

httpcore 1.0.9 assigns a queued request to a *new* connection from another task's
call; if the request is cancelled before its task resumes, the connection stays in
the pool as CONNECTING with no owner, forever counting against ``max_connections``.
Enough of them and every later call fails with a pool timeout.

The SDK guards against it twice (``wrenn._async._requester`` and ``wrenn._netbackend``): unary calls take a
slot of a per-client semaphore sized to the pool, so requests never queue inside
httpcore; and after any failed or cancelled send, ownerless CONNECTING connections
are dropped from the pool. These tests run async only (asyncio and trio): cancelling
a call mid-flight has no blocking equivalent.
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
    in_flight,
    ownerless_connecting,
    running_fault_server,
    timed,
)
from wrenn import AsyncWrennClient, WrennTimeoutError

pytestmark = pytest.mark.anyio

POOL = 20
BURST = 150


@pytest.fixture(scope="module")
def srv() -> Iterator[FaultServer]:
    with running_fault_server() as server:
        yield server


async def _burst(client: AsyncWrennClient, yields: int, call: str) -> None:
    """Start BURST calls and cancel them all after ``yields`` scheduler yields."""
    async with anyio.create_task_group() as group:
        for _ in range(BURST):
            if call == "get":
                group.start_soon(client.capsules.get, CID)
            else:
                group.start_soon(_stream_open, client)
        for _ in range(yields):
            await anyio.lowlevel.checkpoint()
        group.cancel_scope.cancel()


async def _stream_open(client: AsyncWrennClient) -> None:
    async with client.events.stream() as events:
        async for _ in events:
            break


async def _check_healthy(client: AsyncWrennClient) -> None:
    assert ownerless_connecting(client.http) == 0
    assert in_flight(client.http) == 0
    elapsed = timed()
    with anyio.fail_after(5):
        capsule = await client.capsules.get(CID)
    assert capsule.id == CID
    assert elapsed() < 1.0


@pytest.mark.parametrize(
    ("call", "guards"),
    [("get", "both"), ("get", "heal-only"), ("stream", "heal-only")],
)
async def test_CL04_cancelled_bursts_do_not_poison_the_pool(
    srv: FaultServer, call: str, guards: str
) -> None:
    """Streams never take a semaphore slot, so for them (and with the semaphore
    switched off) the pool healing alone has to keep the pool clean."""
    limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
    timeout = httpx.Timeout(5.0, pool=1.0)
    async with AsyncWrennClient(
        api_key=KEY, base_url=srv.url_for("ok"), limits=limits, timeout=timeout
    ) as client:
        if guards == "heal-only":
            client._requester._slots = None
        for _round in range(3):
            for yields in (0, 1, 2, 3):
                await _burst(client, yields, call)
                await _check_healthy(client)
        assert len(client.http._transport._pool._connections) <= POOL  # type: ignore[attr-defined]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # trio's scheduling hides it here
async def test_CL04_without_the_guards_httpcore_is_still_poisoned(
    srv: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Measures the bug the guards exist for: if this starts failing, httpcore fixed it
    and the guards can be reconsidered (keep the tests above either way)."""
    from wrenn import _netbackend

    monkeypatch.setattr(_netbackend, "heal_pool", lambda client: 0)
    limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
    timeout = httpx.Timeout(5.0, pool=0.5)
    async with AsyncWrennClient(
        api_key=KEY, base_url=srv.url_for("ok"), limits=limits, timeout=timeout, max_retries=0
    ) as client:
        client._requester._slots = None
        zombies = 0
        for yields in (0, 1, 2, 3):
            await _burst(client, yields, "get")
            zombies = max(zombies, ownerless_connecting(client.http))
        print(f"CL-04 without guards: {zombies} ownerless CONNECTING connections (pool {POOL})")
        assert zombies > 0
        if ownerless_connecting(client.http) == POOL:  # the pool is full of zombies
            with pytest.raises(WrennTimeoutError):
                await client.capsules.get(CID)


async def test_CL04_guard_also_heals_a_caller_supplied_client(srv: FaultServer) -> None:
    """With a caller's httpx client the semaphore knows the pool size from the pool."""
    limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(5.0, pool=1.0)) as http:
        client = AsyncWrennClient(api_key=KEY, base_url=srv.url_for("ok"), http_client=http)
        for _round in range(3):
            for yields in (0, 1, 2, 3):
                await _burst(client, yields, "get")
                await _check_healthy(client)
        await client.aclose()
