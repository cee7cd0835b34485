"""``wrenn.local``'s isolation backends side by side: what a capsule costs on each.

    python bench/backends.py [--backends microvm,bwrap] [--creates 20] [--alive 20]
                             [--out bench/BACKENDS.md]

For each backend, on one ``LocalServer`` of its own, with capsules of the default
shape (1 vCPU, 512 MiB):

- create to first exec: from the create request to the answer of ``echo hi``,
  one capsule at a time (after one warm-up capsule, which for ``microvm`` also
  writes the shape's base snapshot);
- pause and resume: request to settled status, with a process running;
- snapshot: request to the template's appearance, and its size on disk;
- capsules alive at once: ``--alive`` capsules created, then each runs a command,
  and the server's RSS plus every capsule's (QEMU's for a VM) is sampled.

Medians and p90 over the samples; the machine is noisy, so read the ratios.
Every capsule and template made here is removed, and each server is stopped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from wrenn.local import LocalServer

ECHO = {"cmd": "/bin/sh", "args": ["-c", "echo hi"]}
SLEEPER = {"cmd": "/bin/sh", "args": ["-c", "sleep 600"], "background": True}
SETTLE_S = 120.0


def _wait(http: httpx.Client, capsule_id: str, wanted: str) -> None:
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        status = http.get(f"/v1/capsules/{capsule_id}").json()["status"]
        if status == wanted:
            return
        if status in ("error", "stopped") and status != wanted:
            raise RuntimeError(f"capsule {capsule_id} is {status}, waiting for {wanted}")
        time.sleep(0.005)
    raise RuntimeError(f"capsule {capsule_id} not {wanted} within {SETTLE_S} s")


def _create(http: httpx.Client, **body: Any) -> str:
    r = http.post("/v1/capsules", json=body)
    r.raise_for_status()
    capsule_id: str = r.json()["id"]
    _wait(http, capsule_id, "running")
    return capsule_id


def _echo(http: httpx.Client, capsule_id: str) -> None:
    r = http.post(f"/v1/capsules/{capsule_id}/exec", json=ECHO)
    if r.status_code != 200 or r.json().get("stdout") != "hi\n":
        raise RuntimeError(f"exec failed: {r.status_code} {r.text[:200]}")


def _destroy(http: httpx.Client, capsule_id: str) -> None:
    http.delete(f"/v1/capsules/{capsule_id}")
    _wait(http, capsule_id, "stopped")


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1e3


def _stats(samples: list[float]) -> dict[str, Any]:
    return {
        "n": len(samples),
        "p50": statistics.median(samples),
        "p90": statistics.quantiles(samples, n=10)[-1] if len(samples) > 1 else samples[0],
        "min": min(samples),
        "max": max(samples),
    }


def create_to_first_exec(http: httpx.Client, count: int) -> dict[str, Any]:
    samples = []
    for _ in range(count):
        t0 = time.perf_counter()
        capsule_id = _create(http)
        _echo(http, capsule_id)
        samples.append(_ms(t0))
        _destroy(http, capsule_id)
    return _stats(samples)


def pause_resume_snapshot(http: httpx.Client, rounds: int) -> dict[str, Any]:
    pauses, resumes, snapshots, sizes = [], [], [], []
    capsule_id = _create(http)
    try:
        http.post(f"/v1/capsules/{capsule_id}/exec", json=SLEEPER).raise_for_status()
        for _ in range(rounds):
            t0 = time.perf_counter()
            http.post(f"/v1/capsules/{capsule_id}/pause").raise_for_status()
            _wait(http, capsule_id, "paused")
            pauses.append(_ms(t0))
            t0 = time.perf_counter()
            http.post(f"/v1/capsules/{capsule_id}/resume").raise_for_status()
            _wait(http, capsule_id, "running")
            resumes.append(_ms(t0))
        for i in range(rounds):
            name = f"bench-{i}-{time.monotonic_ns()}"
            t0 = time.perf_counter()
            r = http.post("/v1/snapshots", json={"sandbox_id": capsule_id, "name": name})
            r.raise_for_status()
            _wait(http, capsule_id, "running")
            snapshots.append(_ms(t0))
            found = [t for t in http.get("/v1/snapshots").json() if t["name"] == name]
            if not found:
                raise RuntimeError(f"template {name} did not appear")
            sizes.append(found[0].get("size_bytes") or 0)
            http.delete(f"/v1/snapshots/{name}").raise_for_status()
        _echo(http, capsule_id)
    finally:
        _destroy(http, capsule_id)
    return {
        "pause_ms": _stats(pauses),
        "resume_ms": _stats(resumes),
        "snapshot_ms": _stats(snapshots),
        "snapshot_mib": statistics.median(sizes) / 2**20,
    }


def _rss_bytes(pids: set[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def alive_at_once(http: httpx.Client, count: int) -> dict[str, Any]:
    import os

    ids: list[str] = []
    t0 = time.perf_counter()
    try:
        for _ in range(count):
            ids.append(_create(http))
        created_s = _ms(t0) / 1e3
        for capsule_id in ids:
            _echo(http, capsule_id)
        time.sleep(2.0)  # idle: what they cost at rest
        rss = _rss_bytes(_descendants(os.getpid()))
        return {
            "alive": len(ids),
            "create_all_s": created_s,
            "rss_total_mib": rss / 2**20,
            "rss_per_capsule_mib": rss / 2**20 / max(1, len(ids)),
        }
    finally:
        for capsule_id in ids:
            _destroy(http, capsule_id)


def bench(backend: str, creates: int, alive: int, rounds: int) -> dict[str, Any]:
    with (
        LocalServer(isolation=backend) as server,
        httpx.Client(
            base_url=server.base_url, headers={"X-API-Key": server.api_key}, timeout=120
        ) as http,
    ):
        create_to_first_exec(http, 1)  # warm-up (a VM shape's base snapshot)
        result: dict[str, Any] = {"isolation": server.isolation}
        result["create_to_first_exec_ms"] = create_to_first_exec(http, creates)
        result.update(pause_resume_snapshot(http, rounds))
        result["alive_at_once"] = alive_at_once(http, alive)
        return result


def table(results: dict[str, dict[str, Any]]) -> str:
    kinds = list(results)
    rows = [
        "| | " + " | ".join(f"`{k}`" for k in kinds) + " |",
        "|---|" + "---|" * len(kinds),
    ]

    def row(label: str, cell: Any) -> None:
        rows.append(f"| {label} | " + " | ".join(cell(results[k]) for k in kinds) + " |")

    def dist(key: str) -> Any:
        return lambda r: f"{r[key]['p50']:.0f} / {r[key]['p90']:.0f} ms"

    row("create to first exec, p50 / p90", dist("create_to_first_exec_ms"))
    row("pause, p50 / p90", dist("pause_ms"))
    row("resume, p50 / p90", dist("resume_ms"))
    row("snapshot, p50 / p90", dist("snapshot_ms"))
    row("snapshot size (median)", lambda r: f"{r['snapshot_mib']:.1f} MiB")
    row(
        "capsules alive at once (all ran a command)",
        lambda r: f"{r['alive_at_once']['alive']} in {r['alive_at_once']['create_all_s']:.1f} s",
    )
    row(
        "RSS per idle capsule",
        lambda r: f"{r['alive_at_once']['rss_per_capsule_mib']:.0f} MiB",
    )
    return "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", default="microvm,bwrap")
    parser.add_argument("--creates", type=int, default=20)
    parser.add_argument("--alive", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    results = {}
    for backend in args.backends.split(","):
        started = time.strftime("%H:%M:%S")
        print(f"{started} {backend} ...", file=sys.stderr, flush=True)
        results[backend] = bench(backend, args.creates, args.alive, args.rounds)
        print(json.dumps({backend: results[backend]}), file=sys.stderr, flush=True)
    text = table(results)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
