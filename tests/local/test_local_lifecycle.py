"""Pause/resume, destroy, snapshots, TTL and restart persistence with real processes."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from wrenn.local import LocalServer

from .conftest import needs_bwrap
from .helpers import (
    create,
    destroy,
    error_of,
    host_pids_with,
    pause,
    resume,
    sh,
    snapshot,
    wait_for,
    wait_status,
)

pytestmark = pytest.mark.local

# Written atomically: a pause can land between a truncate and a write.
COUNTER = "i=0; while :; do i=$((i+1)); echo $i > $HOME/c.tmp; mv $HOME/c.tmp $HOME/counter; sleep 0.02; done"


def _counter(server: LocalServer, capsule: str) -> int:
    # Read from the host side: the files API is (correctly) refused while paused.
    path = server.state_dir / "capsules" / capsule / "rw" / "root" / "counter"
    for _ in range(50):
        text = path.read_text().strip()
        if text:
            return int(text)
        time.sleep(0.01)
    raise AssertionError("counter never written")


def test_pause_freezes_and_resume_continues(
    server: LocalServer, http: httpx.Client, capsule: str
) -> None:
    base = f"/v1/capsules/{capsule}"
    http.post(base + "/exec", json={"cmd": "/bin/sh", "args": ["-c", COUNTER], "background": True})
    assert wait_for(lambda: (server.state_dir / "capsules" / capsule / "rw/root/counter").exists())
    time.sleep(0.1)
    pause(http, capsule)
    frozen = _counter(server, capsule)
    time.sleep(0.4)
    assert _counter(server, capsule) == frozen
    resume(http, capsule)
    assert wait_for(lambda: _counter(server, capsule) > frozen + 3, timeout=3)


@needs_bwrap
def test_destroy_kills_every_capsule_process(http: httpx.Client, capsule: str) -> None:
    marker = "4242.4242"
    for _ in range(2):
        http.post(
            f"/v1/capsules/{capsule}/exec",
            json={"cmd": "sleep", "args": [marker], "background": True},
        )
    # A grandchild that detached into its own session is in the capsule too.
    sh(http, capsule, f"setsid sleep {marker} >/dev/null 2>&1 < /dev/null &")
    assert len(host_pids_with(marker)) >= 3
    destroy(http, capsule)
    assert wait_for(lambda: not host_pids_with(marker), timeout=3)


@needs_bwrap
def test_snapshot_and_boot_from_it(http: httpx.Client, capsule: str) -> None:
    sh(http, capsule, "echo from-snapshot > /workspace/data.txt")
    name = f"snap-{capsule[-6:]}"
    snapshot(http, capsule, name)
    tpl = {t["name"]: t for t in http.get("/v1/snapshots").json()}[name]
    assert list(tpl) == [
        "name",
        "type",
        "vcpus",
        "memory_mb",
        "size_bytes",
        "created_at",
        "platform",
        "protected",
    ]
    assert (tpl["name"], tpl["type"], tpl["platform"]) == (name, "snapshot", False)
    assert tpl["size_bytes"] > 0
    # API 0.2.2: a running capsule is snapshotted live and runs on.
    assert http.get(f"/v1/capsules/{capsule}").json()["status"] == "running"
    assert sh(http, capsule, "cat /workspace/data.txt")["stdout"] == "from-snapshot\n"
    assert [t["name"] for t in http.get("/v1/snapshots", params={"type": "snapshot"}).json()].count(
        name
    ) == 1
    names = {t["name"]: t for t in http.get("/v1/snapshots").json()}
    assert names["minimal"]["platform"] and names["minimal-ubuntu"]["type"] == "base"
    r = http.post("/v1/snapshots", json={"sandbox_id": capsule, "name": name})
    assert error_of(r)[:2] == (409, "template_name_taken")
    assert error_of(http.post("/v1/snapshots", json={"sandbox_id": capsule, "name": "minimal"}))[
        :2
    ] == (409, "name_reserved")
    child_id = create(http, template=name, vcpus=4)
    try:
        child = http.get(f"/v1/capsules/{child_id}").json()
        assert child["template"] == name and child["vcpus"] == 1  # baked values win
        assert sh(http, child_id, "cat /workspace/data.txt")["stdout"] == "from-snapshot\n"
        sh(http, child_id, "echo v2 > /workspace/data.txt")
        snapshot(http, child_id, name, overwrite="true")
    finally:
        destroy(http, child_id)
    grandchild = create(http, template=name)
    try:
        assert sh(http, grandchild, "cat /workspace/data.txt")["stdout"] == "v2\n"
    finally:
        destroy(http, grandchild)
    pause(http, capsule)
    auto = snapshot(http, capsule)  # a paused capsule is snapshotted as it is and stays paused
    assert auto.startswith("template-") and len(auto) == len("template-") + 8
    for n in (name, auto):
        assert http.delete(f"/v1/snapshots/{n}").status_code == 204
    assert error_of(http.delete(f"/v1/snapshots/{name}"))[:2] == (404, "not_found")
    assert error_of(http.delete("/v1/snapshots/minimal"))[:2] == (403, "forbidden")
    assert error_of(http.delete("/v1/snapshots/bad%20name"))[:2] == (400, "invalid_request")


def test_ttl_auto_pauses_idle_capsule(http: httpx.Client) -> None:
    with http.stream("GET", "/v1/events/stream", timeout=10) as events:
        lines = events.iter_lines()
        assert next(lines) == "event: connected"
        c = http.get(f"/v1/capsules/{create(http, timeout_sec=2)}").json()
        try:
            assert c["timeout_sec"] == 2
            # Activity (ping here; exec too) resets the clock.
            for _ in range(3):
                time.sleep(0.8)
                assert http.post(f"/v1/capsules/{c['id']}/ping").status_code == 204
            assert http.get(f"/v1/capsules/{c['id']}").json()["status"] == "running"
            assert wait_for(
                lambda: http.get(f"/v1/capsules/{c['id']}").json()["status"] == "paused", timeout=5
            )
            pause = None
            for _, line in zip(range(400), lines, strict=False):
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    if event["event"] == "capsule.pause" and event["resource"]["id"] == c["id"]:
                        pause = event
                        break
            assert pause is not None
            assert pause["actor"]["type"] == "system"
            assert pause["metadata"] == {"reason": "ttl_expired"}
            assert pause["outcome"] == "success"
        finally:
            destroy(http, c["id"])


def test_restart_keeps_state_and_stop_ends_processes(tmp_path: Path) -> None:
    marker = "4343.4343"
    state = tmp_path / "state"
    with (
        LocalServer(state_dir=state, metrics_interval=0.3) as srv,
        httpx.Client(base_url=srv.base_url, headers={"X-API-Key": srv.api_key}, timeout=30) as http,
    ):
        running = create(http)
        paused = create(http)
        sh(http, running, "echo kept > $HOME/file")
        sh(http, paused, "echo also-kept > $HOME/file")
        http.post(
            f"/v1/capsules/{running}/exec",
            json={"cmd": "sleep", "args": [marker], "background": True},
        )
        pause(http, paused)
        snapshot(http, paused, "persisted")
        key = srv.api_key
        assert host_pids_with(marker)
    # Stopping the server ended every sandbox process.
    assert wait_for(lambda: not host_pids_with(marker), timeout=3)
    with (
        LocalServer(state_dir=state, api_key=key) as srv,
        httpx.Client(base_url=srv.base_url, headers={"X-API-Key": key}, timeout=30) as http,
    ):
        assert http.get(f"/v1/capsules/{running}").json()["status"] == "running"
        assert http.get(f"/v1/capsules/{paused}").json()["status"] == "paused"
        assert http.get(f"/v1/capsules/{running}/processes").json() == {"processes": []}
        assert sh(http, running, "cat $HOME/file")["stdout"] == "kept\n"
        resume(http, paused)
        assert sh(http, paused, "cat $HOME/file")["stdout"] == "also-kept\n"
        assert "persisted" in [t["name"] for t in http.get("/v1/snapshots").json()]
        for cid in (running, paused):
            destroy(http, cid)


@needs_bwrap
def test_sandbox_killed_from_the_host_ends_the_capsule(
    server: LocalServer, http: httpx.Client, capsule: str
) -> None:
    # This capsule's own init, by the pid its server recorded. (Matching host
    # processes by command line and mounts also finds other servers' sandboxes:
    # every host-side bwrap sees every capsule disk mounted on the host.)
    init = server._manager.live[capsule].sandbox.init_pid  # type: ignore[union-attr]
    assert init > 0
    assert "echo ready; exec" in Path(f"/proc/{init}/cmdline").read_text()
    os.kill(init, signal.SIGKILL)
    assert wait_status(http, capsule, "stopped", timeout=5)["status"] == "stopped"
    r = http.post(f"/v1/capsules/{capsule}/exec", json={"cmd": "true"})
    assert error_of(r)[:2] == (409, "invalid_state")
