"""API 0.2.2's asynchronous lifecycle, against a fake platform that answers 202.

Every call that starts a transition waits, by default, until it is over; the seed
sequence of the docs (create, get, list, pause, resume, ping, snapshot, boot from the
snapshot, destroy, delete) runs one call after the other with no 409 and no 404.
"""

from __future__ import annotations

import httpx
import pytest

from tests.fake_platform import FakePlatform
from tests.helpers import API_KEY, BASE_URL
from wrenn import AsyncWrennClient, WrennCapsuleStateError, WrennTimeoutError
from wrenn.models import Status, Template

pytestmark = pytest.mark.anyio


def client_of(platform: FakePlatform) -> AsyncWrennClient:
    http = httpx.AsyncClient(transport=platform.transport())
    return AsyncWrennClient(api_key=API_KEY, base_url=BASE_URL, http_client=http)


async def test_the_seed_sequence_runs_verbatim_on_an_asynchronous_platform() -> None:
    platform = FakePlatform(steps=3)
    async with client_of(platform) as client:
        capsule = await client.capsules.create(template="minimal-ubuntu")
        assert capsule.status is Status.running
        assert (await client.capsules.get(capsule.id)).status is Status.running
        assert [c.id for c in await client.capsules.list()] == [capsule.id]
        assert (await client.capsules.pause(capsule.id)).status is Status.paused
        assert (await client.capsules.resume(capsule.id)).status is Status.running
        await client.capsules.ping(capsule.id)
        template = await client.snapshots.create(capsule.id, name="seed-snap")
        assert isinstance(template, Template) and template.name == "seed-snap"
        assert (await client.capsules.get(capsule.id)).status is Status.running
        child = await client.capsules.create(template="seed-snap")
        assert child.status is Status.running and child.template == "seed-snap"
        await client.capsules.destroy(child.id)
        await client.capsules.destroy(capsule.id)
        assert (await client.capsules.get(capsule.id)).status is Status.stopped
        await client.snapshots.delete("seed-snap")
        await client.http.aclose()
    assert platform.conflicts == []
    # Each transition took `steps` looks, no more: the waits stop at the first settled GET.
    assert platform.count(f"GET /v1/capsules/{capsule.id}") <= 6 * 3 + 2


async def test_wait_false_returns_the_202_answer_as_the_official_client_does() -> None:
    platform = FakePlatform(steps=2)
    async with client_of(platform) as client:
        capsule = await client.capsules.create(wait=False)
        assert capsule.status is Status.starting
        assert (await client.capsules.wait(capsule.id)).status is Status.running
        assert (await client.capsules.pause(capsule.id, wait=False)).status is Status.pausing
        # The platform refuses a resume while the capsule is still pausing.
        with pytest.raises(Exception, match="resume while pausing"):
            await client.capsules.resume(capsule.id, wait=False)
        await client.capsules.wait(capsule.id, status="paused")
        assert (await client.capsules.resume(capsule.id, wait=False)).status is Status.resuming
        await client.capsules.wait(capsule.id)
        answer = await client.snapshots.create(capsule.id, name="later", wait=False)
        assert answer.status is Status.snapshotting  # type: ignore[union-attr]
        await client.capsules.wait(capsule.id)
        await client.capsules.destroy(capsule.id, wait=False)
        assert (await client.capsules.get(capsule.id)).status is Status.stopping
        await client.http.aclose()


async def test_a_failed_boot_raises_with_the_capsule_and_destroys_it() -> None:
    platform = FakePlatform(steps=2, fail={"create"})
    async with client_of(platform) as client:
        with pytest.raises(WrennCapsuleStateError) as caught:
            await client.capsules.create()
        await client.http.aclose()
    error = caught.value
    assert error.status == "error" and error.capsule_id is not None
    assert isinstance(error, RuntimeError)
    assert f"DELETE /v1/capsules/{error.capsule_id}" in platform.requests


async def test_a_boot_that_never_finishes_times_out_and_is_destroyed() -> None:
    platform = FakePlatform(steps=2, stuck={"create"})
    async with client_of(platform) as client:
        with pytest.raises(WrennTimeoutError, match=r"create did not finish within 0\.3 s"):
            await client.capsules.create(wait_timeout=0.3)
        await client.http.aclose()
    assert isinstance(WrennTimeoutError("x"), TimeoutError)
    assert any(r.startswith("DELETE /v1/capsules/") for r in platform.requests)


async def test_a_pause_that_rolls_back_is_an_error_not_a_hang() -> None:
    platform = FakePlatform(steps=2, fail={"pause"})
    async with client_of(platform) as client:
        capsule = await client.capsules.create()
        with pytest.raises(WrennCapsuleStateError, match="running after pause"):
            await client.capsules.pause(capsule.id, wait_timeout=30)
        await client.http.aclose()


async def test_a_resume_that_rolls_back_is_an_error() -> None:
    platform = FakePlatform(steps=2, fail={"resume"})
    async with client_of(platform) as client:
        capsule = await client.capsules.create()
        await client.capsules.pause(capsule.id)
        with pytest.raises(WrennCapsuleStateError, match="paused after resume"):
            await client.capsules.resume(capsule.id, wait_timeout=30)
        await client.http.aclose()


async def test_a_snapshot_without_a_template_is_reported() -> None:
    platform = FakePlatform(steps=2, fail={"snapshot"})
    async with client_of(platform) as client:
        capsule = await client.capsules.create()
        with pytest.raises(WrennCapsuleStateError, match=r"snapshot 'gone' .* failed") as caught:
            await client.snapshots.create(capsule.id, name="gone", wait_timeout=0.5)
        assert caught.value.code == "snapshot_failed"
        await client.http.aclose()


async def test_a_paused_capsule_stays_paused_through_a_snapshot() -> None:
    platform = FakePlatform(steps=2)
    async with client_of(platform) as client:
        capsule = await client.capsules.create()
        await client.capsules.pause(capsule.id)
        template = await client.snapshots.create(capsule.id)
        assert template.name.startswith("snapshot-")
        assert (await client.capsules.get(capsule.id)).status is Status.paused
        await client.http.aclose()


async def test_destroy_waits_until_stopped() -> None:
    platform = FakePlatform(steps=3)
    async with client_of(platform) as client:
        capsule = await client.capsules.create()
        await client.capsules.destroy(capsule.id)
        assert platform.capsules[capsule.id].status == "stopped"
        await client.http.aclose()


async def test_destroy_counts_a_capsule_that_is_gone_as_destroyed() -> None:
    platform = FakePlatform(steps=2, forget_destroyed=True)
    async with client_of(platform) as client:
        capsule = await client.capsules.create()
        await client.capsules.destroy(capsule.id)
        await client.http.aclose()
    assert capsule.id not in platform.capsules


async def test_wait_arguments_are_checked() -> None:
    platform = FakePlatform()
    async with client_of(platform) as client:
        with pytest.raises(ValueError, match="wait_timeout"):
            await client.capsules.create(wait_timeout=0)
        with pytest.raises(ValueError, match="wait_timeout"):
            await client.capsules.pause("cl-x", wait_timeout=-1)
        await client.http.aclose()
    assert platform.requests == []
