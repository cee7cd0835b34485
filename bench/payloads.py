"""Realistic Wrenn JSON bodies, built once and reused byte for byte.

Stdlib only: the server imports it, and so does every worker (in either venv) that
times decoding alone. The shapes follow PROTOCOL.md §1.2.1 (``sandboxResponse`` of
control plane v0.1.5): compact Go ``json.Encoder`` output with sorted map keys,
second-precision RFC 3339 timestamps, optional timestamps omitted when null, and the
four ``metadata`` version keys. A fixed seed makes every run serve the same bytes.
"""

from __future__ import annotations

import datetime as dt
import json
import random

SEED = 20261128
CAPSULE_ID = "cl-0123456789abcdefghijklmno"
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_EPOCH = dt.datetime(2026, 11, 28, 9, 0, 0, tzinfo=dt.timezone.utc)
_METADATA = {
    "agent_version": "0.1.5",
    "envd_version": "0.1.5",
    "firecracker_version": "1.10.1",
    "kernel_version": "6.1.102",
}


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def capsule(rng: random.Random, capsule_id: str | None = None) -> dict[str, object]:
    """One capsule as ``GET /v1/capsules`` lists it (a mix of statuses, as on a busy team)."""
    created = _EPOCH + dt.timedelta(seconds=rng.randrange(0, 4 * 3600))
    status = rng.choices(["running", "paused", "starting"], weights=[80, 15, 5])[0]
    body: dict[str, object] = {
        "id": capsule_id or "cl-" + "".join(rng.choice(_B36) for _ in range(25)),
        "status": status,
        "template": rng.choice(["minimal", "python-3.12", "node-22"]),
        "vcpus": rng.choice([1, 2, 4]),
        "memory_mb": rng.choice([512, 1024, 2048]),
        "timeout_sec": rng.choice([0, 300, 3600]),
        "host_ip": f"10.0.{rng.randrange(256)}.{rng.randrange(1, 255)}",
        "created_at": _stamp(created),
    }
    if status != "starting":  # Go omits a null started_at / last_active_at
        started = created + dt.timedelta(seconds=rng.randrange(1, 4))
        body["started_at"] = _stamp(started)
        body["last_active_at"] = _stamp(started + dt.timedelta(seconds=rng.randrange(0, 3600)))
    body["last_updated"] = _stamp(created + dt.timedelta(seconds=rng.randrange(0, 7200)))
    body["metadata"] = dict(_METADATA)
    return body


def go_json(obj: object) -> bytes:
    """Compact JSON with a trailing newline, as Go's ``json.Encoder`` writes it."""
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def one_capsule() -> bytes:
    """Body of ``GET /v1/capsules/{id}`` and of ``POST /v1/capsules`` (a running capsule)."""
    rng = random.Random(SEED)
    body = capsule(rng, CAPSULE_ID)
    body["status"] = "running"
    body.setdefault("started_at", body["created_at"])
    body.setdefault("last_active_at", body["created_at"])
    return go_json(body)


def capsule_list(count: int) -> bytes:
    """Body of ``GET /v1/capsules`` holding ``count`` capsules."""
    rng = random.Random(SEED + count)
    return go_json([capsule(rng) for _ in range(count)])
