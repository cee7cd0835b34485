"""Owned capsules: every create is labelled, what a crashed program left is reaped, a
create whose answer was lost is found and destroyed, a named capsule is found again."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import httpx
import pytest

from tests.fake_platform import FakePlatform
from tests.helpers import API_KEY, BASE_URL
from tests.reliability.fixtures import agather
from wrenn import AsyncWrennClient, WrennConnectionError
from wrenn._labels import CREATE_TOKEN, NAME, NAMESPACE, OWNER, owner_id
from wrenn.local import LocalServer
from wrenn.models import Status

pytestmark = pytest.mark.anyio


def connect(server: LocalServer) -> AsyncWrennClient:
    return AsyncWrennClient(api_key=server.api_key, base_url=server.base_url)


def crashed_program(server: LocalServer, namespace: str) -> str:
    """Run a program that creates a capsule and dies without cleaning up; its capsule id."""
    code = (
        "import os, sys\n"
        "from wrenn import WrennClient\n"
        "client = WrennClient()\n"
        f"capsule = client.capsules.create(namespace={namespace!r})\n"
        "print(capsule.id, flush=True)\n"
        "os._exit(1)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WRENN_")}
    env.update(WRENN_API_KEY=server.api_key, WRENN_BASE_URL=server.base_url)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr[-2000:]
    return done.stdout.strip()


async def test_every_create_is_labelled_with_its_owner_and_call(
    slow_local_server: LocalServer,
) -> None:
    async with connect(slow_local_server) as client:
        capsule = await client.capsules.create(metadata={"team": "a"}, namespace="lbl", name="n1")
        try:
            labels = capsule.metadata or {}
            assert labels["team"] == "a" and labels[OWNER] == owner_id()
            assert labels[NAMESPACE] == "lbl" and labels[NAME] == "n1"
            assert len(labels[CREATE_TOKEN]) == 16
        finally:
            await client.capsules.destroy(capsule.id)
        with pytest.raises(ValueError, match="this SDK's own labels"):
            await client.capsules.create(metadata={"wrenn.owner": "me"})
        with pytest.raises(ValueError, match="at most 18"):
            await client.capsules.create(metadata={f"k{i}": "v" for i in range(19)})
        with pytest.raises(ValueError, match="reserved"):
            await client.capsules.create(metadata={"agent_version": "1"})


async def test_reap_destroys_what_a_crashed_program_left_and_nothing_else(
    slow_local_server: LocalServer,
) -> None:
    namespace = f"reap-{secrets.token_hex(3)}"
    orphan = crashed_program(slow_local_server, namespace)
    async with connect(slow_local_server) as client:
        mine = await client.capsules.create(namespace=namespace)
        elsewhere = await client.capsules.create(namespace=namespace + "-other")
        async with httpx.AsyncClient(
            base_url=slow_local_server.base_url, headers={"X-API-Key": slow_local_server.api_key}
        ) as raw:
            unlabelled = (await raw.post("/v1/capsules", json={})).json()["id"]
        try:
            would = await client.capsules.reap(namespace, dry_run=True)
            assert [c.id for c in would] == [orphan]
            assert (await client.capsules.get(orphan)).status is not Status.stopped
            assert await client.capsules.reap(namespace, older_than=3600) == []
            reaped = await client.capsules.reap(namespace)
            assert [c.id for c in reaped] == [orphan]
            await client.capsules.wait(orphan, status="stopped", timeout=30)
            # this process's own capsule, the other namespace's, the unlabelled one: kept
            for kept in (mine.id, elsewhere.id):
                assert (await client.capsules.get(kept)).status is Status.running
            await client.capsules.wait(unlabelled, status="running", timeout=30)
            assert [c.id for c in await client.capsules.reap(namespace, include_own=True)] == [
                mine.id
            ]
        finally:
            for capsule_id in (mine.id, elsewhere.id, unlabelled):
                await client.capsules._discard(capsule_id, until_stopped=True)


async def test_get_or_create_returns_one_capsule_to_concurrent_callers(
    slow_local_server: LocalServer,
) -> None:
    namespace = f"goc-{secrets.token_hex(3)}"
    async with connect(slow_local_server) as client:
        first = await agather(
            [lambda: client.capsules.get_or_create("worker", namespace=namespace) for _ in range(3)]
        )
        ids = {getattr(c, "id", repr(c)) for c in first}
        assert len(ids) == 1, first
        (capsule_id,) = ids
        try:
            await client.capsules.pause(capsule_id)
            again = await client.capsules.get_or_create("worker", namespace=namespace)
            assert again.id == capsule_id and again.status is Status.running  # resumed
            other = await client.capsules.get_or_create("worker", namespace=namespace + "x")
            assert other.id != capsule_id
            await client.capsules.destroy(other.id)
            await client.capsules.destroy(capsule_id)
            fresh = await client.capsules.get_or_create("worker", namespace=namespace)
            assert fresh.id != capsule_id and fresh.status is Status.running
            capsule_id = fresh.id
        finally:
            await client.capsules._discard(capsule_id, until_stopped=True)


async def test_a_create_whose_answer_is_lost_is_found_and_destroyed() -> None:
    platform = FakePlatform(lose_answers=1)
    http = httpx.AsyncClient(transport=platform.transport())
    async with AsyncWrennClient(api_key=API_KEY, base_url=BASE_URL, http_client=http) as client:
        with pytest.raises(WrennConnectionError):
            await client.capsules.create()
        await http.aclose()
    (made,) = platform.capsules.values()
    assert f"DELETE /v1/capsules/{made.id}" in platform.requests
    assert platform.count("POST /v1/capsules") == 1
