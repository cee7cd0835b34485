"""Samples of real capsule processes, and the metrics, stats and usage views over them.

cpu_pct is the utime+stime delta of every process of the capsule, normalised to
its vcpus; mem_bytes is the summed VmRSS; disk_bytes the allocated size of the
writable dir.  Fleet samples (running count, reserved vCPUs/MB) feed the stats
series and the per-day usage.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

from ._live import Live
from ._store import Store
from ._wire import bad_request, rfc3339

log = logging.getLogger("wrenn.local")

METRIC_RANGES = {
    "5m": 300,
    "10m": 600,
    "1h": 3600,
    "2h": 7200,
    "6h": 21600,
    "12h": 43200,
    "24h": 86400,
}
STATS_RANGES = {
    "5m": (300, 3),
    "1h": (3600, 30),
    "6h": (21600, 180),
    "24h": (86400, 720),
    "30d": (2592000, 21600),
}


class Metrics:
    def __init__(self, store: Store, live: dict[str, Live], interval: float) -> None:
        self.store = store
        self.live = live
        self.interval = interval

    async def run(self) -> None:
        while True:
            try:
                await self.sample_all()
            except Exception:
                log.exception("metrics sample failed")
            await asyncio.sleep(self.interval)

    async def sample_all(self) -> None:
        now = time.time()
        running = [c for c in self.store.list_capsules(("running",)) if c.id in self.live]
        cpu_total = 0.0
        for c in running:
            # Each usage() below awaits: a capsule torn down meanwhile is skipped,
            # and one that fails to measure loses its own sample, not the fleet's.
            live = self.live.get(c.id)
            if live is None:
                continue
            live.sandbox.reap_orphans()
            if live.sandbox.is_frozen:
                continue
            try:
                usage = await live.sandbox.usage()
            except OSError as exc:
                log.debug("capsule %s: no usage sample: %s", c.id, exc)
                continue
            cpu, rss, disk = usage.cpu_seconds, usage.rss_bytes, usage.disk_bytes
            mono = time.monotonic()
            pct = 0.0
            if live.cpu_prev is not None:
                elapsed = mono - live.cpu_prev[0]
                delta = max(cpu - live.cpu_prev[1], 0.0)
                cpu_total += delta
                if elapsed > 0:
                    pct = min(100.0, 100.0 * delta / elapsed / max(c.vcpus, 1))
            live.cpu_prev = (mono, cpu)
            self.store.add_sample(c.id, now, round(pct, 2), rss, disk)
        self.store.add_fleet(
            now,
            len(running),
            sum(c.vcpus for c in running),
            sum(c.memory_mb for c in running),
            cpu_total,
            self.interval,
        )
        self.store.prune(now - 86400, now - 2592000)

    def stats(self, range_: str | None) -> dict[str, Any]:
        range_ = range_ or "1h"
        if range_ not in STATS_RANGES:
            raise bad_request("invalid range: must be one of 5m, 1h, 6h, 24h, 30d")
        span, bucket = STATS_RANGES[range_]
        now = time.time()
        running = [c for c in self.store.list_capsules(("running",))]
        current = {
            "running_count": len(running),
            "vcpus_reserved": sum(c.vcpus for c in running),
            "memory_mb_reserved": sum(c.memory_mb for c in running),
        }
        start = (int(now) - span) // bucket * bucket + bucket
        n = span // bucket
        series: dict[str, list[Any]] = {"labels": [], "running": [], "vcpus": [], "memory_mb": []}
        buckets: dict[int, list[int]] = {}
        for ts, r, v, m, _cpu, _iv in self.store.fleet(start):
            idx = int(ts - start) // bucket
            cur = buckets.setdefault(idx, [0, 0, 0])
            buckets[idx] = [max(cur[0], r), max(cur[1], v), max(cur[2], m)]
        for i in range(n):
            r, v, m = buckets.get(i, [0, 0, 0])
            series["labels"].append(rfc3339(start + i * bucket))
            series["running"].append(r)
            series["vcpus"].append(v)
            series["memory_mb"].append(m)
        peaks = {
            "running_count": current["running_count"],
            "vcpus": current["vcpus_reserved"],
            "memory_mb": current["memory_mb_reserved"],
        }
        for _ts, r, v, m, _cpu, _iv in self.store.fleet(now - 2592000):
            peaks = {
                "running_count": max(peaks["running_count"], r),
                "vcpus": max(peaks["vcpus"], v),
                "memory_mb": max(peaks["memory_mb"], m),
            }
        return {"range": range_, "current": current, "peaks": peaks, "series": series}

    def usage(self, from_: str | None, to: str | None) -> dict[str, Any]:
        today = dt.datetime.now(dt.timezone.utc).date()
        try:
            end = dt.date.fromisoformat(to) if to else today
            begin = dt.date.fromisoformat(from_) if from_ else today - dt.timedelta(days=29)
        except ValueError:
            raise bad_request("invalid date: use YYYY-MM-DD") from None
        if begin > end:
            raise bad_request("from must not be after to")
        if (end - begin).days > 92:
            raise bad_request("date range must not exceed 92 days")
        epoch = dt.datetime(begin.year, begin.month, begin.day, tzinfo=dt.timezone.utc).timestamp()
        until = epoch + ((end - begin).days + 1) * 86400
        per_day: dict[int, list[float]] = {}
        for ts, _r, v, m, _cpu, interval in self.store.fleet(epoch, until):
            day = int(ts - epoch) // 86400
            acc = per_day.setdefault(day, [0.0, 0.0])
            # Reserved capacity while running, like billing: vCPU-minutes and MB-minutes.
            acc[0] += v * interval / 60
            acc[1] += m * interval / 60
        points = []
        for i in range((end - begin).days + 1):
            cpu, ram = per_day.get(i, [0.0, 0.0])
            points.append(
                {
                    "date": (begin + dt.timedelta(days=i)).isoformat(),
                    "cpu_minutes": round(cpu, 4),
                    "ram_mb_minutes": round(ram, 4),
                }
            )
        return {"from": begin.isoformat(), "to": end.isoformat(), "points": points}

    async def points(self, capsule_id: str, range_: str | None, running: bool) -> dict[str, Any]:
        range_ = range_ or "10m"
        if range_ not in METRIC_RANGES:
            raise bad_request("invalid range: must be one of 5m, 10m, 1h, 2h, 6h, 12h, 24h")
        since = time.time() - METRIC_RANGES[range_]
        points = self.store.samples(capsule_id, since)
        if not points and running:
            await self.sample_all()
            points = self.store.samples(capsule_id, since)
        return {
            "sandbox_id": capsule_id,
            "range": range_,
            "points": [
                {"timestamp_unix": int(ts), "cpu_pct": cpu, "mem_bytes": mem, "disk_bytes": disk}
                for ts, cpu, mem, disk in points
            ],
        }
