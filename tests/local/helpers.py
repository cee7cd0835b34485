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
