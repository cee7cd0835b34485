"""The microVM backend's checks that need no QEMU."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from wrenn.local._runtime import BootError
from wrenn.local._runtime._cgroup import Limits
from wrenn.local._runtime._microvm import VmSandbox
from wrenn.local._vm._image import Image


def _sandbox(tmp_path: Path, limits: Limits) -> VmSandbox:
    image = Image(tmp_path, tmp_path / "vmlinux", tmp_path / "initramfs", tmp_path / "rootfs", "r")
    return VmSandbox("cl-shape", tmp_path / "capsule", None, limits=limits, image=image)


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (Limits(vcpus=1, memory_mb=4 * 1024 * 1024), "memory_mb=4194304 is more than half"),
        (Limits(vcpus=256, memory_mb=256), "vcpus=256 is more than this host runs"),
    ],
)
def test_a_guest_the_host_cannot_hold_is_refused_before_qemu_starts(
    tmp_path: Path, limits: Limits, message: str
) -> None:
    # The API accepts these (up to 4 TiB and 256 vCPUs); a VM's memory is real.
    sandbox = _sandbox(tmp_path, limits)
    with pytest.raises(BootError, match=message):
        asyncio.run(sandbox.boot())
    assert sandbox.vm is None
    assert not (tmp_path / "capsule").exists()  # nothing was made


def test_a_code_runner_capsule_needs_host_directories(tmp_path: Path) -> None:
    image = Image(tmp_path, tmp_path / "vmlinux", tmp_path / "initramfs", tmp_path / "rootfs", "r")
    sandbox = VmSandbox("cl-binds", tmp_path / "capsule", None, ("/usr/lib",), image=image)
    with pytest.raises(BootError, match="sees no host directory"):
        asyncio.run(sandbox.boot())
