"""wrenn.local under attack: other capsules' API latency while one capsule misbehaves.

    python bench/local_attacks.py [--samples 300] [--seconds 25] [--out FILE]

Starts an embedded server (bubblewrap; run as root for the cgroup limits and disk
images), two victim capsules and, per scenario, one attacker capsule (1 vCPU,
256 MiB, 1 GiB disk). A probe client measures, one call after another, a
``GET /v1/capsules/{victim}`` and an ``exec echo`` in a victim: first with nothing
else running (idle), then while each attack runs. Prints a Markdown table of
p50/p99 per scenario and the p99 ratio to idle (the criterion: within 2x).

Every attack is bounded by the attacker's cgroup (pids, memory, CPU) and disk
image, and by ``timeout`` inside the capsule; the attacker is destroyed after its
scenario and the server is stopped by its context manager. Only loopback is used.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import httpx

from wrenn.local import LocalServer

ATTACKER = {"template": "minimal", "vcpus": 1, "memory_mb": 256}


def _wait(api: httpx.Client, capsule_id: str, wanted: set[str], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        r = api.get(f"/v1/capsules/{capsule_id}")
        status = r.json().get("status", "gone") if r.status_code == 200 else "gone"
        if status in wanted:
            return status
        time.sleep(0.05)
    raise RuntimeError(f"{capsule_id} stayed {status}")


def _create(api: httpx.Client, **body: Any) -> str:
    r = api.post("/v1/capsules", json=body)
    r.raise_for_status()
    capsule_id: str = r.json()["id"]
    if _wait(api, capsule_id, {"running", "error"}) != "running":
        raise RuntimeError(f"{capsule_id} did not start")
    return capsule_id


def _destroy(api: httpx.Client, capsule_id: str) -> None:
    _wait(api, capsule_id, {"running", "paused", "error", "stopped", "gone"})
    api.delete(f"/v1/capsules/{capsule_id}")
    _wait(api, capsule_id, {"stopped", "gone"}, timeout=120)


def _background(api: httpx.Client, capsule_id: str, script: str) -> None:
    r = api.post(
        f"/v1/capsules/{capsule_id}/exec",
        json={"cmd": "/bin/sh", "args": ["-c", script], "background": True},
    )
    r.raise_for_status()


def _exec_in_thread(api: httpx.Client, capsule_id: str, script: str) -> threading.Thread:
    """A foreground exec whose (large) answer another client waits for."""

    def run() -> None:
        try:
            api.post(
                f"/v1/capsules/{capsule_id}/exec",
                json={"cmd": "/bin/sh", "args": ["-c", script], "timeout_sec": 60},
                timeout=90,
            )
        except httpx.HTTPError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# Each attack starts in the attacker capsule and ends by itself within `seconds`.
def _fork_bomb(api: httpx.Client, cid: str, seconds: int) -> None:
    _background(
        api, cid, f"i=0; while [ $i -lt 5000 ]; do i=$((i+1)); sleep {seconds} 2>/dev/null & done"
    )


def _memory_hog(api: httpx.Client, cid: str, seconds: int) -> None:
    hog = "python3 -c 'a=[bytearray(1<<20) for _ in range(4096)]' 2>/dev/null"
    _background(api, cid, f"timeout {seconds} sh -c 'while :; do {hog}; done'")


def _cpu_burn(api: httpx.Client, cid: str, seconds: int) -> None:
    for _ in range(4):
        _background(api, cid, f"timeout {seconds} sh -c 'while :; do :; done'")


def _disk_fill(api: httpx.Client, cid: str, seconds: int) -> None:
    fill = "dd if=/dev/zero of=/root/fill bs=1M 2>/dev/null; rm -f /root/fill"
    _background(api, cid, f"timeout {seconds} sh -c 'while :; do {fill}; done'")


def _output_flood(api: httpx.Client, cid: str, seconds: int) -> None:
    # 1 GB of stdout through REST exec (the server keeps 16 MiB and drains the rest).
    _exec_in_thread(api, cid, f"timeout {seconds} head -c 1000000000 /dev/zero")


ATTACKS: dict[str, Callable[[httpx.Client, str, int], None]] = {
    "fork bomb (5,000 forks, pids.max 1024)": _fork_bomb,
    "memory hog (4 GiB asked, 256 MiB limit)": _memory_hog,
    "CPU burn (4 busy loops, 1 vCPU)": _cpu_burn,
    "disk fill (1 GiB disk, rewritten)": _disk_fill,
    "1 GB of stdout through REST exec": _output_flood,
}


def _probe(
    api: httpx.Client, victims: list[str], samples: int, seconds: float
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"get": [], "exec": []}
    stop = time.monotonic() + seconds
    i = 0
    while len(out["exec"]) < samples and time.monotonic() < stop:
        victim = victims[i % len(victims)]
        i += 1
        t0 = time.perf_counter()
        r = api.get(f"/v1/capsules/{victim}")
        t1 = time.perf_counter()
        e = api.post(f"/v1/capsules/{victim}/exec", json={"cmd": "/bin/echo", "args": ["ok"]})
        t2 = time.perf_counter()
        if r.status_code != 200 or e.status_code != 200 or e.json().get("stdout") != "ok\n":
            raise RuntimeError(
                f"victim call failed: {r.status_code} {e.status_code} {e.text[:200]}"
            )
        out["get"].append((t1 - t0) * 1e3)
        out["exec"].append((t2 - t1) * 1e3)
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _round(
    api: httpx.Client,
    victims: list[str],
    attack: Callable[[httpx.Client, str, int], None],
    args: Any,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """One paired round: the victims idle, then while one capsule attacks."""
    idle = _probe(api, victims, args.samples, args.seconds)
    attacker = _create(api, **ATTACKER)
    try:
        attack(api, attacker, args.seconds)
        time.sleep(1.0)  # let it reach full strength
        return idle, _probe(api, victims, args.samples, args.seconds - 2)
    finally:
        _destroy(api, attacker)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=400, help="probe pairs per phase")
    parser.add_argument("--seconds", type=int, default=25, help="how long each attack runs")
    parser.add_argument("--rounds", type=int, default=3, help="paired idle/attack rounds")
    parser.add_argument("--out", help="also write the Markdown report to this file")
    parser.add_argument("--only", default="", help="run only attacks whose name contains this")
    args = parser.parse_args()
    # name -> per round: (idle p50/p99, attack p50/p99) for get and exec
    results: dict[str, list[dict[str, float]]] = {}
    started = time.monotonic()
    with LocalServer(isolation="bwrap", disk_size_mb=1024) as server:
        headers = {"X-API-Key": server.api_key}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as api:
            health = api.get("/health").json()
            victims = [_create(api, template="minimal") for _ in range(2)]
            try:
                _probe(api, victims, 30, 10)  # warm-up, not counted
                for _ in range(args.rounds):
                    for name, attack in ATTACKS.items():
                        if args.only not in name:
                            continue
                        idle, hit = _round(api, victims, attack, args)
                        results.setdefault(name, []).append(
                            {
                                f"{phase}_{op}_{q}": _pct(data[op], quantile)
                                for phase, data in (("idle", idle), ("attack", hit))
                                for op in ("get", "exec")
                                for q, quantile in (("p50", 0.5), ("p99", 0.99))
                            }
                        )
            finally:
                for victim in victims:
                    _destroy(api, victim)
    lines = [
        f"# wrenn.local under attack ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)",
        "",
        f"`python bench/local_attacks.py --samples {args.samples} --seconds {args.seconds} "
        f"--rounds {args.rounds}`, {time.monotonic() - started:.0f} s; "
        f"Python {platform.python_version()}, {os.cpu_count()} cores, load average at end "
        f"{os.getloadavg()[0]:.2f}; server isolation {health.get('isolation')}, "
        f"freeze {health.get('freeze')}, disk_quota {health.get('disk_quota')}, "
        f"uid {os.geteuid()}.",
        "",
        "Two victim capsules; one client calls `GET /v1/capsules/{victim}` and an exec of "
        "`echo` in a victim, one after another, first with the victims alone (idle), then "
        "while one more capsule attacks (1 vCPU, 256 MiB, 1 GiB disk). Each round pairs an "
        "idle phase with an attack phase; ratio = attack p99 / idle p99 of the same round, "
        "shown as the median over rounds (min-max). Criterion: GET p99 ratio <= 2.",
        "",
        "| scenario | GET p50 ms (idle / attack) | GET p99 ms (idle / attack) | GET p99 ratio "
        "| exec p99 ms (idle / attack) | exec p99 ratio |",
        "|---|---|---|---|---|---|",
    ]
    for name, rounds in results.items():

        def med(key: str, rounds: list[dict[str, float]] = rounds) -> float:
            return statistics.median(r[key] for r in rounds)

        def ratio(op: str, rounds: list[dict[str, float]] = rounds) -> str:
            values = sorted(r[f"attack_{op}_p99"] / r[f"idle_{op}_p99"] for r in rounds)
            return f"{statistics.median(values):.2f} ({values[0]:.2f}-{values[-1]:.2f})"

        lines.append(
            f"| {name} | {med('idle_get_p50'):.2f} / {med('attack_get_p50'):.2f} "
            f"| {med('idle_get_p99'):.2f} / {med('attack_get_p99'):.2f} | {ratio('get')} "
            f"| {med('idle_exec_p99'):.1f} / {med('attack_exec_p99'):.1f} | {ratio('exec')} |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
