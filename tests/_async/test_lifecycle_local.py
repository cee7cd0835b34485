"""API 0.2.2's asynchronous lifecycle end to end: wrenn.local with slowed transitions,
over a real loopback socket, in asyncio, trio and (generated) blocking code."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.reliability.fixtures import agather
from wrenn import AsyncCapsule, AsyncWrennClient
from wrenn.local import LocalServer
from wrenn.models import Capsule as CapsuleModel
from wrenn.models import Status, Template

pytestmark = pytest.mark.anyio


def connect(server: LocalServer, **options: object) -> AsyncWrennClient:
    return AsyncWrennClient(api_key=server.api_key, base_url=server.base_url, **options)  # type: ignore[arg-type]


async def test_the_seed_sequence_runs_verbatim(slow_local_server: LocalServer) -> None:
    async with connect(slow_local_server) as client:
        capsule = await client.capsules.create(template="minimal")
        assert capsule.status is Status.running
        capsule = await client.capsules.get(capsule.id)
        assert capsule.id in [c.id for c in await client.capsules.list()]
        assert (await client.capsules.pause(capsule.id)).status is Status.paused
        assert (await client.capsules.resume(capsule.id)).status is Status.running
        await client.capsules.ping(capsule.id)
        name = f"seed-{capsule.id[-8:]}"
        template = await client.snapshots.create(capsule_id=capsule.id, name=name)
        assert isinstance(template, Template) and template.name == name
        booted = await client.capsules.create(template=name)
        assert booted.status is Status.running and booted.template == name
        await client.capsules.destroy(booted.id)
        await client.capsules.destroy(capsule.id)
        assert (await client.capsules.get(capsule.id)).status is Status.stopped
        await client.snapshots.delete(name)


async def test_wait_false_shows_the_transitional_states(slow_local_server: LocalServer) -> None:
    async with connect(slow_local_server) as client:
        capsule = await client.capsules.create(wait=False)
        assert capsule.status is Status.starting
        await client.capsules.wait(capsule.id)
        assert (await client.capsules.pause(capsule.id, wait=False)).status is Status.pausing
        await client.capsules.wait(capsule.id, status="paused")
        answer = await client.snapshots.create(capsule.id, wait=False)
        assert isinstance(answer, CapsuleModel) and answer.status is Status.snapshotting
        assert (await client.capsules.wait(capsule.id, status="paused")).status is Status.paused
        await client.capsules.destroy(capsule.id, wait=False)
        assert (await client.capsules.get(capsule.id)).status is Status.stopping
        await client.capsules.wait(capsule.id, status="stopped")


async def test_a_capsule_object_waits_for_every_transition(slow_local_server: LocalServer) -> None:
    keys = {"api_key": slow_local_server.api_key, "base_url": slow_local_server.base_url}
    async with await AsyncCapsule.create(**keys) as capsule:
        # Running when created: a command needs no wait_ready() first.
        assert (await capsule.commands.run("echo up")).stdout == "up\n"
        await capsule.files.write("/root/state.txt", "kept")
        assert (await capsule.pause()).status is Status.paused
        assert (await capsule.resume()).status is Status.running
        template = await capsule.create_snapshot(name=f"obj-{capsule.capsule_id[-8:]}")
        assert await capsule.is_running()
        async with await AsyncCapsule.create(template=template.name, **keys) as child:
            assert await child.files.read("/root/state.txt") == "kept"
        await capsule.client.snapshots.delete(template.name)


async def test_concurrent_waits_share_the_event_stream_and_wake_on_events(
    slow_local_server: LocalServer,
) -> None:
    paths: list[str] = []

    async def record(request: httpx.Request) -> None:
        paths.append(request.url.path)

    http = httpx.AsyncClient(event_hooks={"request": [record]})
    count = 3
    async with connect(slow_local_server, http_client=http) as client:
        started = time.monotonic()
        created = await agather([lambda: client.capsules.create() for _ in range(count)])
        elapsed = time.monotonic() - started
        capsules = [c for c in created if isinstance(c, CapsuleModel)]
        assert len(capsules) == count, created
        assert all(c.status is Status.running for c in capsules)
        # One subscription serves the concurrent waits; a later wait takes it over
        # when the one carrying it is done, so never more than one per wait.
        assert 1 <= paths.count("/v1/events/stream") <= count
        # Woken by events, a wait looks a few times, not at every step of the poll
        # schedule (polling alone would look 5 to 6 times in the first half second).
        for capsule in capsules:
            looks = paths.count(f"/v1/capsules/{capsule.id}")
            assert looks <= 4 + elapsed / 0.8, (looks, elapsed)
        await agather([lambda c=c: client.capsules.destroy(c.id) for c in capsules])  # type: ignore[misc]
        await http.aclose()
