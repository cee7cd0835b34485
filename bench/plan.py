"""What gets measured: scenarios, the variants in each, and how much of each per mode.

A scenario yields one number per variant per round (``metric``); ``better`` says
which direction wins, so a paired ratio can always be read as "how many times
better our SDK is than that variant in the same round" (> 1 means ours is better).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SYNC = ["ours-sync", "official-sync", "httpx-sync", "floor-sync"]
ASYNCIO = ["ours-asyncio", "official-asyncio", "httpx-asyncio", "floor-asyncio"]
TRIO = ["ours-trio", "official-trio", "httpx-trio"]


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    worker: str  # worker.py scenario name
    variants: list[str]
    params: dict[str, Any]
    metric: str  # how to read one worker result; see metric_of()
    unit: str
    better: str  # "higher" or "lower"
    timeout_s: float = 120.0
    rounds: int | None = None  # None: the plan's default
    extra: dict[str, str] = field(default_factory=dict)  # more columns: label -> metric


def metric_of(result: dict[str, Any], metric: str) -> float | None:
    """Extract one number from a worker's JSON result (None when it failed)."""
    if not result.get("ok"):
        return None
    value: Any = result
    for part in metric.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def scenarios(quick: bool) -> list[Scenario]:
    seq_count, seq_s = (600, 1.0) if quick else (1000, 1.0)
    list_reps = 3 if quick else 6
    conc_rounds = 1 if quick else 3
    seq_variants = [v for v in SYNC + ASYNCIO + TRIO if v != "official-trio"]
    out = [
        Scenario(
            "get",
            "Sequential GET /v1/capsules/{id}",
            "seq",
            seq_variants,
            {"kind": "get", "count": seq_count, "seconds": seq_s},
            "rps",
            "req/s",
            "higher",
            extra={"client CPU µs/req": "cpu_us"},
        ),
        Scenario(
            "post",
            "Sequential POST /v1/capsules (create)",
            "seq",
            seq_variants,
            {"kind": "post", "count": seq_count, "seconds": seq_s},
            "rps",
            "req/s",
            "higher",
            extra={"client CPU µs/req": "cpu_us"},
        ),
    ]
    for size in (1000, 10000):
        out.append(
            Scenario(
                f"list-{size}",
                f"List {size:,} capsules, end to end",
                "list",
                [v for v in SYNC + ASYNCIO if v != "floor-asyncio"],
                {"size": size, "reps": list_reps, "seconds": 4.0 if quick else 6.0},
                "ms",
                "ms",
                "lower",
                extra={"client CPU ms": "cpu_ms"},
            )
        )
    for size in (1000, 10000):
        out.append(
            Scenario(
                f"decode-{size}",
                f"Decode {size:,} capsules alone (bytes in memory)",
                "decode",
                ["ours-sync", "official-sync", "httpx-sync"],
                {"size": size, "reps": list_reps * 2, "seconds": 3.0},
                "ms",
                "ms",
                "lower",
            )
        )
    for count in (100, 1000):
        for backend, variants in (("asyncio", ASYNCIO), ("trio", TRIO)):
            out.append(
                Scenario(
                    f"concurrent-{count}-{backend}",
                    f"{count:,} concurrent GETs, pool of 100, {backend}",
                    "concurrent",
                    variants,
                    {"count": count, "pool": 100, "stall_s": 10.0},
                    "cold.rps",
                    "req/s (cold pool)",
                    "higher",
                    timeout_s=60.0,
                    rounds=conc_rounds,
                    extra={"warm pool req/s": "warm.rps"},
                )
            )
    # 10,000 calls at once from one client: ours only (the others already stall at
    # 1,000). Bounded memory: the peak resident set of the worker is reported.
    for backend in ("asyncio", "trio"):
        out.append(
            Scenario(
                f"concurrent-10000-{backend}",
                f"10,000 concurrent GETs, pool of 100, {backend}",
                "concurrent",
                [f"ours-{backend}"],
                {"count": 10000, "pool": 100, "stall_s": 60.0},
                "cold.rps",
                "req/s (cold pool)",
                "higher",
                timeout_s=150.0,
                rounds=conc_rounds,
                extra={"warm pool req/s": "warm.rps", "peak RSS MB": "peak_rss_mb"},
            )
        )
    out.append(
        Scenario(
            "rss-10000",
            "Peak RSS growth while listing 10,000 capsules",
            "rss",
            ["ours-sync", "official-sync", "httpx-sync", "floor-sync"],
            {"size": 10000},
            "growth_mb",
            "MB",
            "lower",
        )
    )
    return out


# Cold imports: a fresh interpreter per sample, timing only the import statement.
# "ours-min" is a venv holding only what `pip install wrenn` brings (no dev tools): in the
# dev venv, uvicorn's click makes `import httpx` load its CLI too, which users do not pay.
IMPORTS: dict[str, tuple[str, str]] = {
    # label: (venv, statement)
    "ours: import wrenn": ("ours-min", "import wrenn"),
    "ours: import wrenn + both clients": (
        "ours-min",
        "import wrenn; wrenn.WrennClient; wrenn.AsyncWrennClient",
    ),
    "official: import wrenn": ("official", "import wrenn"),
    "baseline: import httpx, msgspec, anyio": ("ours-min", "import httpx, msgspec, anyio"),
}


@dataclass(frozen=True)
class Plan:
    quick: bool
    rounds: int
    import_samples: int
    local_creates: int
    local_alive: int

    @classmethod
    def make(cls, quick: bool, rounds: int | None = None) -> Plan:
        if quick:
            return cls(True, rounds or 2, 5, 8, 50)
        return cls(False, rounds or 5, 10, 20, 50)
