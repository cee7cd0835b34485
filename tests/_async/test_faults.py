"""The SDK against wrenn.local's injected faults, end to end over a real loopback socket,
in asyncio, trio and (generated) blocking code: every failure a test can rehearse with
``server.faults`` surfaces as the SDK promises, and the SDK recovers where it should."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability.fixtures import SleepRecorder
from wrenn import (
    AsyncCapsule,
    AsyncWrennClient,
    WrennAgentError,
    WrennConnectionError,
    WrennRateLimitError,
    WrennStreamInterruptedError,
)
from wrenn.local import CutStream, DiskFull, LocalServer, Reset, Respond, SlowTransition
from wrenn.models import Status

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def no_faults_left(local_server: LocalServer) -> Iterator[None]:
    local_server.faults.clear()
    yield
    local_server.faults.clear()


def connect(server: LocalServer, **options: object) -> AsyncWrennClient:
    return AsyncWrennClient(api_key=server.api_key, base_url=server.base_url, **options)  # type: ignore[arg-type]


async def open_capsule(server: LocalServer) -> AsyncCapsule:
    return await AsyncCapsule.create(api_key=server.api_key, base_url=server.base_url)


async def test_a_429_storm_with_retry_after_is_retried_then_succeeds(
    local_server: LocalServer, sleeps: SleepRecorder
) -> None:
    rule = local_server.faults.add(Respond("GET /v1/capsules", 429, retry_after=1.5, times=2))
    async with connect(local_server) as client:
        assert isinstance(await client.capsules.list(), list)
    assert rule.hits == 2 and not rule.active
    assert sleeps.delays == [1.5, 1.5]  # the server's Retry-After, not the SDK's backoff


async def test_exhausted_retries_surface_the_rate_limit_error(
    local_server: LocalServer, sleeps: SleepRecorder
) -> None:
    rule = local_server.faults.respond("GET /v1/capsules", 429, retry_after=2, times=3)
    async with connect(local_server) as client:
        with pytest.raises(WrennRateLimitError) as info:
            await client.capsules.list()
        assert info.value.status_code == 429 and info.value.code == "rate_limited"
        assert info.value.retry_after == 2.0 and info.value.retries_taken == 2
        assert rule.hits == 3
        assert isinstance(await client.capsules.list(), list)  # the storm is over
    assert len(sleeps.delays) == 2


async def test_a_reset_get_is_retried_and_a_reset_post_is_not(
    local_server: LocalServer, sleeps: SleepRecorder
) -> None:
    async with await open_capsule(local_server) as capsule, connect(local_server) as client:
        get = local_server.faults.add(Reset("GET /v1/capsules/{id}", capsule_id=capsule.capsule_id))
        assert (await client.capsules.get(capsule.capsule_id)).status is Status.running
        assert get.hits == 1 and len(sleeps.delays) == 1
        # The server ran the command but the answer was lost: a POST is not sent again.
        post = local_server.faults.reset("POST /v1/capsules/{id}/exec", at="response")
        with pytest.raises(WrennConnectionError) as info:
            await capsule.commands.run("sleep 30", background=True, tag="once")
        assert info.value.request_sent and post.hits == 1
        assert [p.tag for p in await capsule.commands.list()] == ["once"]


async def test_a_dropped_command_stream_surfaces_a_stream_error(
    local_server: LocalServer,
) -> None:
    async with await open_capsule(local_server) as capsule:
        cut = local_server.faults.add(CutStream("exec", 1, capsule_id=capsule.capsule_id))
        with pytest.raises(WrennStreamInterruptedError, match="connection dropped") as info:
            await capsule.commands.run("echo one; sleep 0.2; echo two")
        assert info.value.close_code is None and cut.hits == 1
        assert (await capsule.commands.run("echo again")).stdout == "again\n"


async def test_a_slow_resume_is_waited_out(local_server: LocalServer) -> None:
    async with await open_capsule(local_server) as capsule, connect(local_server) as client:
        assert (await capsule.pause()).status is Status.paused
        slow = SlowTransition("resume", 0.5, capsule_id=capsule.capsule_id)
        with local_server.faults.inject(slow):
            assert (await client.capsules.resume(capsule.capsule_id)).status is Status.running
        assert slow.hits == 1
        # Held until released: the 202 says resuming, and so does every look until then.
        held = local_server.faults.slow_transition("pause", None)
        answer = await client.capsules.pause(capsule.capsule_id, wait=False)
        assert answer.status is Status.pausing
        assert (await client.capsules.get(capsule.capsule_id)).status is Status.pausing
        held.release()
        waited = await client.capsules.wait(capsule.capsule_id, status="paused")
        assert waited.status is Status.paused


async def test_a_cut_event_stream_without_reconnect_is_an_interrupted_stream(
    local_server: LocalServer,
) -> None:
    cut = local_server.faults.cut_stream("events", 1)
    seen: list[str] = []
    async with connect(local_server) as client:
        with pytest.raises(WrennStreamInterruptedError):
            async with client.events.stream(reconnect=False) as events:
                async for event in events:
                    seen.append(str(event.event.value))
                    assert len(seen) < 10, seen
    assert seen == ["connected"] and cut.hits == 1


async def test_waits_ride_out_an_event_stream_that_keeps_being_cut(
    local_server: LocalServer,
) -> None:
    async with await open_capsule(local_server) as capsule, connect(local_server) as client:
        local_server.faults.cut_stream("events", 1, times=None)
        local_server.faults.slow_transition("pause", 0.3)
        assert (await client.capsules.pause(capsule.capsule_id)).status is Status.paused


async def test_a_full_disk_is_a_clear_error(local_server: LocalServer) -> None:
    async with await open_capsule(local_server) as capsule:
        with local_server.faults.inject(DiskFull(capsule_id=capsule.capsule_id)) as full:
            with pytest.raises(WrennAgentError, match="no space left on device") as info:
                await capsule.files.write("/root/big.bin", b"x" * 1024)
            assert info.value.status_code == 502 and info.value.code == "agent_error"
            assert info.value.retries_taken == 0  # a full disk is not retried
        assert full.hits == 1
        await capsule.files.write("/root/big.bin", b"x" * 1024)
        assert await capsule.files.read("/root/big.bin") == "x" * 1024


async def test_no_fault_outlives_its_test(local_server: LocalServer) -> None:
    # The autouse fixture (and wrenn_faults in the plugin) clear them; nothing is left.
    assert local_server.faults.rules == ()
    async with connect(local_server) as client:
        assert isinstance(await client.capsules.list(), list)
