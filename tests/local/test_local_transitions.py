"""The asynchronous lifecycle's own machinery: transitions that take time, a server
that stops in the middle of them, and statuses a killed server left behind.

The answers during each transition are covered by test_conformance.py (whose
server makes every transition last half a second).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from wrenn.local import LocalServer
from wrenn.local._capsules import Manager
from wrenn.local._runtime import choose_backend
from wrenn.local._store import Store
from wrenn.local._wire import ApiError

from .helpers import (
    create,
    destroy,
    error_of,
    host_pids_with,
    resume,
    sh,
    wait_for,
    wait_status,
)

pytestmark = pytest.mark.local

# Far longer than any test waits: a transition that settles did not wait it out.
LONG_DELAY = 30.0


def _client(srv: LocalServer) -> httpx.Client:
    return httpx.Client(base_url=srv.base_url, headers={"X-API-Key": srv.api_key}, timeout=30)


def test_transition_delay_holds_each_transitional_status(tmp_path: Path) -> None:
    with LocalServer(state_dir=tmp_path, transition_delay=1.0) as srv, _client(srv) as http:
        r = http.post("/v1/capsules", json={})
        cid = r.json()["id"]
        assert (r.status_code, r.json()["status"]) == (202, "starting")
        assert http.get(f"/v1/capsules/{cid}").json()["status"] == "starting"
        assert wait_status(http, cid)["status"] == "running"
        r = http.post(f"/v1/capsules/{cid}/pause")
        assert (r.status_code, r.json()["status"]) == (202, "pausing")
        assert error_of(http.post(f"/v1/capsules/{cid}/resume")) == (
            409,
            "invalid_state",
            "resource is not paused",
        )
        assert wait_status(http, cid)["status"] == "paused"
        resume(http, cid)
        destroy(http, cid)


def test_stop_mid_transition_leaks_nothing_and_restart_settles(tmp_path: Path) -> None:
    marker = "4646.4646"
    state = tmp_path / "state"
    with LocalServer(state_dir=state) as srv, _client(srv) as http:
        key = srv.api_key
        paused_later = create(http)
    with (
        LocalServer(state_dir=state, api_key=key, transition_delay=LONG_DELAY) as srv,
        _client(srv) as http,
    ):
        # Booted cold at start; a process of its own, then a pause that takes "30 s".
        http.post(
            f"/v1/capsules/{paused_later}/exec",
            json={"cmd": "sleep", "args": [marker], "background": True},
        )
        assert host_pids_with(marker)
        assert http.post(f"/v1/capsules/{paused_later}/pause").json()["status"] == "pausing"
        starting = http.post("/v1/capsules", json={}).json()["id"]
        assert http.get(f"/v1/capsules/{starting}").json()["status"] == "starting"
        if srv.isolation == "bwrap":  # bwrap's command line names the capsule's directory
            assert wait_for(lambda: host_pids_with(starting))
        began = time.monotonic()
    # Stopping finished both transitions at once (it did not wait out their delay)...
    assert time.monotonic() - began < LONG_DELAY / 2
    # ...and ended every sandbox process, the booting capsule's included.
    assert not host_pids_with(marker)
    assert not host_pids_with(starting)
    with LocalServer(state_dir=state, api_key=key) as srv, _client(srv) as http:
        assert http.get(f"/v1/capsules/{starting}").json()["status"] == "running"
        assert http.get(f"/v1/capsules/{paused_later}").json()["status"] == "paused"
        assert sh(http, starting, "echo up")["stdout"] == "up\n"
        resume(http, paused_later)
        for cid in (starting, paused_later):
            destroy(http, cid)


def test_restart_settles_what_a_killed_server_left_mid_transition(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with LocalServer(state_dir=state) as srv, _client(srv) as http:
        key = srv.api_key
        ids = {status: create(http) for status in ("starting", "pausing", "stopping")}
        ids["snapshotting"] = create(http)
    (state / "templates" / ".half-written.0123abcd").mkdir()
    # As a server killed in the middle of each transition leaves them.
    store = Store(state / "wrenn-local.db")
    try:
        for status, cid in ids.items():
            store.update_capsule(cid, status=status)
    finally:
        store.close()
    with LocalServer(state_dir=state, api_key=key) as srv, _client(srv) as http:
        got = {s: http.get(f"/v1/capsules/{cid}").json()["status"] for s, cid in ids.items()}
        assert got == {
            "starting": "error",
            "pausing": "paused",
            "stopping": "stopped",
            "snapshotting": "paused",
        }
        assert not (state / "capsules" / ids["stopping"]).exists()
        assert not (state / "templates" / ".half-written.0123abcd").exists()
        resume(http, ids["pausing"])
        for status in ("starting", "pausing", "snapshotting"):
            destroy(http, ids[status])


def test_shutdown_finishes_transitions_then_refuses_new_ones(tmp_path: Path) -> None:
    async def main() -> None:
        manager = Manager(
            tmp_path, choose_backend("none", "transitions-test"), transition_delay=LONG_DELAY
        )
        await manager.start()
        try:
            capsule = manager.lifecycle.create({})
            assert capsule["status"] == "starting"
            assert manager.lifecycle.in_flight == 1
            with pytest.raises(ApiError) as busy:
                manager.lifecycle.destroy(capsule["id"])
            assert busy.value.status == 409
            await manager.lifecycle.shutdown()
            assert manager.lifecycle.in_flight == 0  # finished (without the delay), not orphaned
            assert manager.get_row(capsule["id"]).status == "running"
            for call in (
                lambda: manager.lifecycle.create({}),
                lambda: manager.lifecycle.pause(capsule["id"]),
            ):
                with pytest.raises(ApiError) as refused:
                    call()
                assert (refused.value.status, refused.value.code) == (503, "host_unavailable")
        finally:
            await manager.stop()
        assert not manager.live

    asyncio.run(main())
