"""The embedded server (``wrenn.local``): create + first exec latency, and N capsules alive.

Run by run.py in its own process: ``local_bench.py --creates 20 --alive 50``; prints
one JSON line. The capsules are real bubblewrap sandboxes. Every capsule this script
creates is destroyed before it exits, and the server is stopped by its context manager.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import httpx

from wrenn.local import LocalServer

EXEC = {"cmd": "/bin/sh", "args": ["-c", "echo hi"]}


def _exec(http: httpx.Client, capsule_id: str) -> None:
    """POST /v1/capsules/{id}/exec and check the output (the SDK has no exec call yet)."""
    response = http.post(f"/v1/capsules/{capsule_id}/exec", json=EXEC)
    if response.status_code != 200 or response.json().get("stdout") != "hi\n":
        raise RuntimeError(f"exec failed: {response.status_code} {response.text[:200]}")


def create_then_exec(client: Any, http: httpx.Client, creates: int, seconds: float) -> list[float]:
    """Milliseconds from create request to the first exec's answer, one capsule at a time."""
    samples: list[float] = []
    stop = time.perf_counter() + seconds
    while len(samples) < creates and time.perf_counter() < stop:
        t0 = time.perf_counter()
        capsule = client.capsules.create(template="minimal")
        try:
            _exec(http, capsule.id)
            samples.append((time.perf_counter() - t0) * 1e3)
        finally:
            client.capsules.destroy(capsule.id)  # not timed
    return samples


def alive_at_once(client: Any, http: httpx.Client, count: int, seconds: float) -> dict[str, Any]:
    """Create ``count`` capsules, then prove every one of them runs commands at the same time."""
    ids: list[str] = []
    t0 = time.perf_counter()
    try:
        while len(ids) < count and time.perf_counter() - t0 < seconds:
            ids.append(client.capsules.create(template="minimal").id)
        created_s = time.perf_counter() - t0
        working = 0
        for capsule_id in ids:
            _exec(http, capsule_id)
            working += 1
        listed = sum(1 for c in client.capsules.list() if str(c.status) == "running")
        return {
            "requested": count,
            "created": len(ids),
            "exec_ok": working,
            "listed_running": listed,
            "create_all_s": created_s,
            "ok": len(ids) == count and working == count and listed >= count,
        }
    finally:
        for capsule_id in ids:
            client.capsules.destroy(capsule_id)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--creates", type=int, default=20)
    parser.add_argument("--alive", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    result: dict[str, Any] = {"ok": True}
    try:
        with (
            LocalServer() as server,
            server.client() as client,
            httpx.Client(
                base_url=server.base_url, headers={"X-API-Key": server.api_key}, timeout=30
            ) as http,
        ):
            create_then_exec(client, http, 1, args.seconds)  # warm-up: first sandbox, caches
            samples = create_then_exec(client, http, args.creates, args.seconds)
            result["create_exec_ms"] = samples
            result["p50_ms"] = statistics.median(samples)
            result["p90_ms"] = statistics.quantiles(samples, n=10)[-1] if len(samples) > 1 else None
            result["isolation"] = getattr(server, "isolation", None)
            result["alive"] = alive_at_once(client, http, args.alive, args.seconds)
    except Exception as exc:
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500], **result}
        result["ok"] = False
    print(json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    main()
