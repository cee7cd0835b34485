"""The metrics sampler against capsules that go away or fail while it awaits."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from wrenn.local._live import Live
from wrenn.local._metrics import Metrics
from wrenn.local._runtime import Usage
from wrenn.local._store import CapsuleRow, Store


class _Sandbox:
    def __init__(self, on_usage: Any = None) -> None:
        self.on_usage = on_usage
        self.is_frozen = False

    def reap_orphans(self) -> int:
        return 0

    async def usage(self) -> Usage:
        if self.on_usage is not None:
            self.on_usage()
        await asyncio.sleep(0)
        return Usage(1.0, 4096, 8192)


def _row(capsule_id: str, age: float) -> CapsuleRow:
    # The sampler goes newest first: ``age`` orders the capsules.
    born = time.time() - age
    return CapsuleRow(capsule_id, "running", "minimal", 1, 512, 0, born, born, born, born)


def test_a_capsule_torn_down_or_failing_mid_sample_loses_only_its_own(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    live: dict[str, Live] = {}

    def tear_down_b() -> None:
        live.pop("cl-b")  # as Manager.teardown does while usage() awaits

    def fail() -> None:
        raise OSError("the capsule's microVM is not running")

    plan = (("cl-a", tear_down_b), ("cl-b", None), ("cl-c", fail), ("cl-d", None))
    for age, (capsule_id, on_usage) in enumerate(plan):
        store.insert_capsule(_row(capsule_id, age))
        live[capsule_id] = Live(_Sandbox(on_usage), None)  # type: ignore[arg-type]

    asyncio.run(Metrics(store, live, 1.0).sample_all())

    assert [cid for cid in ("cl-a", "cl-b", "cl-c", "cl-d") if store.samples(cid, 0)] == [
        "cl-a",
        "cl-d",
    ]
    assert len(store.fleet(0)) == 1  # the fleet's row is written all the same
    store.close()
