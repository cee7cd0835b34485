from __future__ import annotations

import os
import time
from typing import Any

import httpx


def sh(http: httpx.Client, capsule_id: str, script: str, **extra: Any) -> dict[str, Any]:
    r = http.post(
        f"/v1/capsules/{capsule_id}/exec", json={"cmd": "/bin/sh", "args": ["-c", script], **extra}
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def error_of(r: httpx.Response) -> tuple[int, str, str]:
    body = r.json()["error"]
    return r.status_code, body["code"], body["message"]


def host_pids_with(marker: str) -> list[int]:
    """Host pids whose command line contains ``marker``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(name))
        except OSError:
            continue
    return found


def wait_for(predicate: Any, timeout: float = 5.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# The lifecycle is asynchronous (API 0.2.2): a call answers 202 with the capsule in
# its transitional status, and these helpers poll, bounded, until it settles.
SETTLE_TIMEOUT = 30.0
SETTLED = frozenset({"running", "paused", "stopped", "error"})


def wait_status(
    http: httpx.Client,
    capsule_id: str,
    statuses: str | frozenset[str] = SETTLED,
    timeout: float = SETTLE_TIMEOUT,
) -> dict[str, Any]:
    """Poll ``GET /v1/capsules/{id}`` until its status is one of ``statuses``; the capsule."""
    wanted = frozenset({statuses}) if isinstance(statuses, str) else statuses
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.02) + 1):
        r = http.get(f"/v1/capsules/{capsule_id}")
        assert r.status_code == 200, r.text
        capsule: dict[str, Any] = r.json()
        if capsule["status"] in wanted:
            return capsule
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    raise AssertionError(f"capsule {capsule_id} is {capsule['status']}, not {sorted(wanted)}")


def create(http: httpx.Client, **body: Any) -> str:
    """Create a capsule, check the 202 says ``starting``, wait until it runs; its id."""
    r = http.post("/v1/capsules", json=body)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "starting", r.text
    capsule_id: str = r.json()["id"]
    assert wait_status(http, capsule_id)["status"] == "running"
    return capsule_id


def pause(http: httpx.Client, capsule_id: str) -> None:
    r = http.post(f"/v1/capsules/{capsule_id}/pause")
    assert (r.status_code, r.json()["status"]) == (202, "pausing"), r.text
    assert wait_status(http, capsule_id)["status"] == "paused"


def resume(http: httpx.Client, capsule_id: str) -> None:
    r = http.post(f"/v1/capsules/{capsule_id}/resume")
    assert (r.status_code, r.json()["status"]) == (202, "resuming"), r.text
    assert wait_status(http, capsule_id)["status"] == "running"


def destroy(http: httpx.Client, capsule_id: str) -> None:
    """Destroy and wait until ``stopped``; a capsule still in transition is waited for first."""
    wait_status(http, capsule_id)
    r = http.delete(f"/v1/capsules/{capsule_id}")
    assert r.status_code == 202, r.text
    assert wait_status(http, capsule_id, "stopped")["status"] == "stopped"


def snapshot(http: httpx.Client, capsule_id: str, name: str | None = None, **params: str) -> str:
    """Snapshot, wait until the capsule settles, check the template exists; its name."""

    def names() -> set[str]:
        return {t["name"] for t in http.get("/v1/snapshots", params={"type": "snapshot"}).json()}

    body = {"sandbox_id": capsule_id, **({"name": name} if name else {})}
    before = http.get(f"/v1/capsules/{capsule_id}").json()["status"]
    known = names()
    r = http.post("/v1/snapshots", json=body, params=params)
    assert r.status_code == 202, r.text
    assert (r.json()["id"], r.json()["status"]) == (capsule_id, "snapshotting"), r.text
    assert wait_status(http, capsule_id)["status"] == before
    after = names()
    if name is None:  # generated: the 202 carries the capsule, not the template
        (name,) = after - known
    assert name in after, after
    return name
