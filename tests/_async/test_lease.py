"""Leases keep a capsule running exactly while work runs, on a server whose auto-pause
is quick (a 3 s timeout_sec, checked every 0.2 s), so the difference shows in seconds.
The default schedule pings every second there, which leaves two seconds of slack for
a busy machine (the platform's own minimum timeout_sec is 60 s)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from wrenn import AsyncCapsule, AsyncWrennClient, WrennCapsuleStateError
from wrenn._compat import asleep
from wrenn.local import LocalServer
from wrenn.models import Status

pytestmark = pytest.mark.anyio

TTL = 3


@pytest.fixture(scope="module")
def quick_pause_server() -> Iterator[LocalServer]:
    with LocalServer(min_timeout_sec=1, ttl_interval=0.2) as server:
        yield server


def keys(server: LocalServer) -> dict[str, str]:
    return {"api_key": server.api_key, "base_url": server.base_url}


async def test_a_lease_keeps_a_capsule_running_through_a_job_that_only_moves_files(
    quick_pause_server: LocalServer,
) -> None:
    async with await AsyncCapsule.create(timeout=TTL, **keys(quick_pause_server)) as capsule:
        async with capsule.lease() as lease:
            for i in range(4 * TTL):  # twice the TTL of file traffic: no exec, no ping
                await capsule.files.write(f"/root/part{i}", b"x" * 1024)
                await asleep(0.5)
            assert (await capsule.get_info()).status is Status.running
        assert lease.pings >= 3
        # Without the lease, the same idleness pauses it.
        await asleep(TTL + 1.5)
        assert (await capsule.get_info()).status is Status.paused


async def test_a_lease_that_loses_its_capsule_says_so_when_the_block_ends(
    quick_pause_server: LocalServer,
) -> None:
    async with AsyncWrennClient(**keys(quick_pause_server)) as client:
        capsule = await client.capsules.create(timeout_sec=TTL)
        with pytest.raises(WrennCapsuleStateError, match=r"lease on capsule .* ended") as caught:
            async with client.capsules.lease(capsule.id, every=0.2) as lease:
                await client.capsules.destroy(capsule.id)
                await asleep(1.0)
        assert caught.value.code == "lease_lost" and lease.error is not None


async def test_a_capsule_without_auto_pause_needs_no_pings(
    quick_pause_server: LocalServer,
) -> None:
    async with AsyncWrennClient(**keys(quick_pause_server)) as client:
        capsule = await client.capsules.create(timeout_sec=0)
        try:
            async with client.capsules.lease(capsule.id) as lease:
                await asleep(0.3)
            assert lease.pings == 0
            with pytest.raises(ValueError, match="every"):
                client.capsules.lease(capsule.id, every=0)
        finally:
            await client.capsules.destroy(capsule.id)
