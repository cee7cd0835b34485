"""Pre-booted base snapshots: a new capsule is a restore (~0.3 s), not a cold boot (~4 s).

A memory snapshot can only be restored into a VM of the same shape, so there is
one base snapshot per (accelerator, vcpus, memory_mb, disk size), kept beside the
image it was booted from (``<image>/base/<accel>-<vcpus>x<memory_mb>-<disk>M/``).  The first capsule of a shape pays
the cold boot; every later one, in this server or another, restores.  Built in a
temporary sibling directory and renamed into place, as the image is, so a
half-written snapshot is never used; a lock file serializes builders of the same
shape across processes, and a second builder finds the first one's result.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path

from ._engine import MicroVm, VmSpec
from ._image import Image

log = logging.getLogger("wrenn.local.vm")

_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


def base_snapshot(image: Image, spec: VmSpec, *, boot_timeout: float = 120.0) -> Path:
    """The snapshot directory of a freshly booted VM of shape ``spec``, built if missing."""
    disk = "" if spec.disk_mb is None else f"-{spec.disk_mb}M"
    final = image.directory / "base" / f"{spec.accel}-{spec.vcpus}x{spec.memory_mb}{disk}"
    if (final / "vm.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with _locks_guard:
        lock = _locks.setdefault(final, threading.Lock())
    with lock, open(final.parent / f".{final.name}.lock", "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if (final / "vm.json").is_file():  # built while we waited
            return final
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f".build-{final.name}-", dir=final.parent))
        try:
            vm = MicroVm.boot(image, work / "vm", spec, timeout=boot_timeout)
            try:
                vm.snapshot(work / "snapshot")
            finally:
                vm.destroy()
            (work / "snapshot").rename(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log.info(
            "vm base snapshot %s booted and written in %.1f s",
            final.name,
            time.monotonic() - started,
        )
        return final
