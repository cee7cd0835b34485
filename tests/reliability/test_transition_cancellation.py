"""Waiting for a transition, interrupted: nothing is left behind (API 0.2.2 lifecycle).

A create whose wait is cancelled destroys its capsule; the event stream a wait carries
ends with the wait, in a task (asyncio, trio) or in a thread (the blocking client).
"""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from tests.fake_platform import FakePlatform
from tests.helpers import API_KEY, BASE_URL
from wrenn import AsyncWrennClient, WrennClient
from wrenn.local import LocalServer

pytestmark = pytest.mark.anyio


def _carrier_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "wrenn-background" and t.is_alive()]


async def test_a_cancelled_create_destroys_its_capsule(slow_local_server: LocalServer) -> None:
    server = slow_local_server
    async with AsyncWrennClient(api_key=server.api_key, base_url=server.base_url) as client:
        before = {c.id for c in await client.capsules.list()}
        with anyio.move_on_after(0.2) as scope:
            await client.capsules.create()  # starting lasts 0.5 s on this server
        assert scope.cancelled_caught
        new = [c for c in await client.capsules.list() if c.id not in before]
        assert len(new) == 1 and new[0].status is not None
        assert new[0].status.value in ("stopping", "stopped")  # destroyed on the way out
        await client.capsules.wait(new[0].id, status="stopped", timeout=30)


async def test_a_cancelled_wait_on_a_fake_platform_sends_the_destroy() -> None:
    import httpx

    platform = FakePlatform(stuck={"create"})
    http = httpx.AsyncClient(transport=platform.transport())
    async with AsyncWrennClient(api_key=API_KEY, base_url=BASE_URL, http_client=http) as client:
        with anyio.move_on_after(0.3):
            await client.capsules.create()
        await http.aclose()
    assert [r for r in platform.requests if r.startswith("DELETE")] == [
        "DELETE /v1/capsules/cl-fake00000000000000000001"
    ]


def test_the_blocking_clients_event_thread_ends_with_the_wait(
    slow_local_server: LocalServer,
) -> None:
    server = slow_local_server
    with WrennClient(api_key=server.api_key, base_url=server.base_url) as client:
        capsule = client.capsules.create()
        # The carrier thread is joined when the wait returns (bounded: it is woken by
        # shutting its socket down, not by the next keepalive).
        deadline = time.monotonic() + 5
        while _carrier_threads() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _carrier_threads() == []
        client.capsules.destroy(capsule.id)
        assert _carrier_threads() == []
