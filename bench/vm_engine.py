"""Measure the microVM engine (wrenn.local._vm): medians of several runs, one VM at a time.

    PYTHONPATH=src python bench/vm_engine.py [--runs 5] [--builds 3] [--memory-mb 256]

Image builds go to fresh temporary cache dirs (removed afterwards); the VMs use
the cached image of ``WRENN_VM_CACHE`` (or ``~/.cache/wrenn/vm``).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from wrenn.local._vm import Image, MicroVm, VmSpec, build_image


def _du_mib(path: Path) -> float:
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file()) / 2**20


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f}, n={len(values)})"


def bench_builds(runs: int) -> None:
    times: list[float] = []
    sizes: list[float] = []
    for _ in range(runs):
        cache = Path(tempfile.mkdtemp(prefix="wrenn-vm-bench-"))
        try:
            started = time.monotonic()
            image = build_image(cache)
            times.append(time.monotonic() - started)
            sizes.append(_du_mib(image.directory))
        finally:
            shutil.rmtree(cache)
    print(f"image build s: {_median(times)}")
    print(f"image size on disk MiB: {_median(sizes)}")


def bench_vms(image: Image, runs: int, spec: VmSpec, work: Path) -> None:
    boots: list[float] = []
    round_trips: list[float] = []
    snaps: list[float] = []
    snap_mib: list[float] = []
    restores: list[float] = []
    for run in range(runs):
        started = time.monotonic()
        vm = MicroVm.boot(image, work / f"boot{run}", spec)
        try:
            vm.exec(["true"])
            boots.append(time.monotonic() - started)
            for _ in range(10):
                started = time.monotonic()
                vm.exec(["true"])
                round_trips.append(time.monotonic() - started)
            started = time.monotonic()
            snapshot = vm.snapshot(work / f"snap{run}")
            snaps.append(time.monotonic() - started)
            snap_mib.append((snapshot / "memory").stat().st_size / 2**20)
        finally:
            vm.destroy()
        started = time.monotonic()
        restored = MicroVm.restore(image, snapshot, work / f"restored{run}")
        try:
            restored.exec(["true"])
            restores.append(time.monotonic() - started)
        finally:
            restored.destroy()
    print(f"cold boot to first exec s: {_median(boots)}")
    print(f"exec round trip (true) ms: {_median([t * 1000 for t in round_trips])}")
    print(f"snapshot (stop + migrate to file + disk copy) s: {_median(snaps)}")
    print(f"memory file MiB: {_median(snap_mib)}")
    print(f"restore to first exec s: {_median(restores)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--builds", type=int, default=3)
    parser.add_argument("--memory-mb", type=int, default=256)
    args = parser.parse_args()
    if args.builds:
        bench_builds(args.builds)
    image = build_image()
    with tempfile.TemporaryDirectory(prefix="wrenn-vm-") as work:
        bench_vms(image, args.runs, VmSpec(vcpus=1, memory_mb=args.memory_mb), Path(work))


if __name__ == "__main__":
    main()
