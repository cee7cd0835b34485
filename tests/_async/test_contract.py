"""The documented contract, verbatim, against wrenn.local over a real loopback socket."""

from __future__ import annotations

import pytest

from wrenn import AsyncWrennClient, WrennConflictError, WrennNotFoundError, WrennValidationError
from wrenn.local import LocalServer
from wrenn.models import Status, Template, TemplateType

pytestmark = pytest.mark.anyio


def connect(server: LocalServer) -> AsyncWrennClient:
    return AsyncWrennClient(api_key=server.api_key, base_url=server.base_url)


async def test_the_documented_contract(local_server: LocalServer) -> None:
    async with connect(local_server) as client:
        capsule = await client.capsules.create(template="minimal")
        capsule = await client.capsules.get(capsule.id)
        all_capsules = await client.capsules.list()
        assert capsule.id in [c.id for c in all_capsules]
        assert (await client.capsules.pause(capsule.id)).status is Status.paused
        assert (await client.capsules.resume(capsule.id)).status is Status.running
        await client.capsules.ping(capsule.id)
        name = f"contract-{capsule.id[-6:]}"
        template = await client.snapshots.create(capsule_id=capsule.id, name=name)
        assert isinstance(template, Template) and template.type is TemplateType.snapshot
        templates = await client.snapshots.list()
        assert name in [t.name for t in templates]
        booted = await client.capsules.create(template=name)
        assert booted.template == name
        await client.capsules.destroy(capsule.id)
        await client.capsules.destroy(booted.id)
        await client.snapshots.delete(name)
        assert name not in [t.name for t in await client.snapshots.list()]
        # destroy is idempotent; a stopped capsule is still readable but not listed
        await client.capsules.destroy(capsule.id)
        assert (await client.capsules.get(capsule.id)).status is Status.stopped
        assert capsule.id not in [c.id for c in await client.capsules.list()]


async def test_close_without_context_manager(local_server: LocalServer) -> None:
    client = connect(local_server)
    assert isinstance(await client.snapshots.list(), list)
    await client.aclose()
    assert client.is_closed


async def test_server_errors_arrive_typed(local_server: LocalServer) -> None:
    async with connect(local_server) as client:
        with pytest.raises(WrennValidationError):
            await client.capsules.get("not-a-capsule-id")
        with pytest.raises(WrennNotFoundError):
            await client.capsules.get("cl-" + "0" * 25)
        capsule = await client.capsules.create()
        try:
            with pytest.raises(WrennConflictError) as info:
                await client.capsules.resume(capsule.id)
            assert info.value.code == "invalid_state"
        finally:
            await client.capsules.destroy(capsule.id)


async def test_wait_stats_usage_and_metrics(local_server: LocalServer) -> None:
    async with connect(local_server) as client:
        capsule = await client.capsules.create(timeout_sec=0)
        try:
            ready = await client.capsules.wait(capsule.id, status="running", timeout=30)
            assert ready.status is Status.running
            stats = await client.capsules.stats(range="5m")
            assert stats.current is not None
            usage = await client.capsules.usage()
            assert usage.from_ is not None and usage.to is not None
            metrics = await client.capsules.metrics(capsule.id, range="5m")
            assert metrics.points is not None
        finally:
            await client.capsules.destroy(capsule.id)


async def test_event_stream_reports_lifecycle(local_server: LocalServer) -> None:
    async with connect(local_server) as client:
        async with client.events.stream(idle_timeout=20) as events:
            first = await events.__anext__()
            assert first.event == "connected"
            capsule = await client.capsules.create()
            await client.capsules.destroy(capsule.id)
            seen = []
            changes = []
            async for event in events:
                if event.resource is not None and event.resource.id == capsule.id:
                    seen.append(event.event)
                    if event.event == "capsule.state.changed":
                        assert event.outcome is None and event.metadata is not None
                        changes.append((event.metadata["from"], event.metadata["to"]))
                    else:
                        assert event.outcome == "success"
                if "capsule.destroy" in seen or len(seen) > 20:
                    break
        # API 0.2.2: every status change is an event, then the action's own outcome.
        assert seen.index("capsule.create") < seen.index("capsule.destroy")
        assert changes == [
            ("pending", "starting"),
            ("starting", "running"),
            ("running", "stopping"),
            ("stopping", "stopped"),
        ]
