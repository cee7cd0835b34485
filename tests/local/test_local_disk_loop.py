"""Capsule disks bound and mounted by system call (``_runtime._loop``), and the tool fallback.

Every loop device and mount a test here makes is gone when it ends: mounts are
detached in ``finally`` blocks, and each test checks that no loop device is
still bound to its image (devices are ``autoclear``, so the last unmount or
close unbinds them; the kernel may take a moment, hence the polling).
"""

from __future__ import annotations

import errno
import os
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from wrenn.local import LocalServer
from wrenn.local._runtime import _disk, _loop

from .conftest import needs_bwrap
from .helpers import create, destroy, sh, wait_status

needs_disks = pytest.mark.skipif(
    _disk.why_unavailable() is not None, reason=str(_disk.why_unavailable())
)

DISK_MB = 32


def _bound_to(image: Path) -> list[str]:
    """Loop devices whose backing file is ``image``."""
    out = []
    for entry in Path("/sys/block").glob("loop*"):
        try:
            backing = (entry / "loop" / "backing_file").read_text().rstrip("\n")
        except OSError:
            continue
        if backing.removesuffix(" (deleted)") == str(image):
            out.append(entry.name)
    return out


def _none_bound_to(image: Path, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while _bound_to(image):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _loop_attrs(device: str) -> dict[str, str]:
    name = os.path.basename(device)
    return {
        key: Path(f"/sys/block/{name}/loop/{key}").read_text().strip()
        for key in ("backing_file", "autoclear", "dio")
    }


def _mount_of(point: Path) -> tuple[str, str] | None:
    """(filesystem type, source) of the mount at ``point``."""
    for path, fstype, source in _disk._mounts():
        if path == str(point):
            return fstype, source
    return None


def _options_of(point: Path) -> set[str]:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == str(point):
                return set(fields[5].split(","))
    return set()


@pytest.fixture
def image(tmp_path: Path) -> Iterator[Path]:
    """A fresh ext4 image and its mount point; whatever is left mounted is detached."""
    path = tmp_path / _disk.IMAGE_NAME
    _disk._make(path, DISK_MB)
    (tmp_path / "rw").mkdir()
    try:
        yield path
    finally:
        if os.path.ismount(tmp_path / "rw"):
            _disk._detach(str(tmp_path / "rw"))
        assert _none_bound_to(path)


def test_mount_options_split_into_flags_and_filesystem_data() -> None:
    assert _loop.mount_flags("nosuid,nodev,noatime") == (0x2 | 0x4 | 0x400, "")
    assert _loop.mount_flags(_disk._MOUNT_OPTIONS)[1] == ""
    assert _loop.mount_flags("nosuid,noexec,data=ordered,,errors=remount-ro") == (
        0x2 | 0x8,
        "data=ordered,errors=remount-ro",
    )


@needs_disks
def test_a_device_bound_by_syscall_is_the_images_with_autoclear_and_direct_io(
    image: Path,
) -> None:
    rw = image.parent / "rw"
    _disk._mount_by_syscall(image, rw)
    mount = _mount_of(rw)
    assert mount is not None and mount[0] == "ext4"
    assert _loop_attrs(mount[1]) == {"backing_file": str(image), "autoclear": "1", "dio": "1"}
    assert {"nosuid", "nodev", "noatime"} <= _options_of(rw)
    assert _disk._is_capsule_disk(rw, *mount)
    assert _bound_to(image) == [os.path.basename(mount[1])]
    _disk._detach(str(rw))
    assert _none_bound_to(image)


@needs_disks
def test_a_failed_mount_leaves_no_loop_device_behind(
    image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bound: list[str] = []

    def failing_mount(source: str, target: Path, fstype: str, options: str) -> None:
        bound.extend(_bound_to(image))  # configured, not yet mounted
        raise OSError(errno.EIO, f"mount {source} on {target}: injected")

    monkeypatch.setattr(_loop, "mount", failing_mount)
    with pytest.raises(_disk.DiskError, match="injected"):
        _disk._mount_by_syscall(image, image.parent / "rw")
    assert len(bound) == 1
    assert not os.path.ismount(image.parent / "rw")
    assert _none_bound_to(image)


@needs_disks
def test_a_device_taken_by_someone_else_is_retried_then_given_up(
    image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure = _loop._configure
    calls: list[str] = []

    def busy_once(device: str, config: Any) -> int | None:
        calls.append(device)
        return None if len(calls) == 1 else configure(device, config)

    monkeypatch.setattr(_loop, "_configure", busy_once)
    _disk._mount_by_syscall(image, image.parent / "rw")
    assert len(calls) == 2
    _disk._detach(str(image.parent / "rw"))
    assert _none_bound_to(image)

    monkeypatch.setattr(_loop, "_configure", lambda device, config: None)
    with pytest.raises(_disk.DiskError, match="no free loop device"):
        _disk._mount_by_syscall(image, image.parent / "rw")
    assert not os.path.ismount(image.parent / "rw")


def _kernel_without_loop_configure(monkeypatch: pytest.MonkeyPatch) -> None:
    """``_loop`` sees LOOP_CONFIGURE refused the way a kernel before 5.8 refuses it."""
    real = _loop.fcntl

    def ioctl(fd: int, request: int, *args: Any) -> Any:
        if request == _loop.LOOP_CONFIGURE:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real.ioctl(fd, request, *args)

    monkeypatch.setattr(_loop, "fcntl", types.SimpleNamespace(ioctl=ioctl))


@needs_disks
def test_an_old_kernel_is_told_apart_from_a_failure(
    image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _kernel_without_loop_configure(monkeypatch)
    with pytest.raises(_loop.LoopUnsupported, match="LOOP_CONFIGURE"):
        _disk._mount_by_syscall(image, image.parent / "rw")
    assert _none_bound_to(image)


@needs_disks
def test_disks_fall_back_to_the_tools_on_an_old_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _kernel_without_loop_configure(monkeypatch)
    disks = _disk.Disks(tmp_path, DISK_MB)
    capsule_dir = tmp_path / "capsules" / "cl-test"
    try:
        assert disks.enabled, disks.reason
        assert disks.by_syscall is False  # found out by the trial mount
        disks.attach(capsule_dir)
        mount = _mount_of(capsule_dir / "rw")
        assert mount is not None
        assert _loop_attrs(mount[1]) == {
            "backing_file": str(capsule_dir / _disk.IMAGE_NAME),
            "autoclear": "1",
            "dio": "1",
        }
        assert {"nosuid", "nodev", "noatime"} <= _options_of(capsule_dir / "rw")
    finally:
        disks.detach(capsule_dir)
        disks.close()
    assert not os.path.ismount(capsule_dir / "rw")
    assert _none_bound_to(capsule_dir / _disk.IMAGE_NAME)


@needs_disks
def test_the_tools_are_required_only_without_the_syscall_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    which = _disk.shutil.which
    monkeypatch.setattr(
        _disk.shutil,
        "which",
        lambda name, path=None: None if name == "losetup" else which(name, path=path),
    )
    assert _disk.why_unavailable() is None
    monkeypatch.setattr(_loop, "_MOUNT", None)
    assert _disk.why_unavailable() == "losetup not found"


def _api(server: LocalServer) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers={"X-API-Key": server.api_key}, timeout=60)


@pytest.mark.local
@needs_bwrap
@needs_disks
def test_a_capsules_disk_device_goes_with_the_capsule(tmp_path: Path) -> None:
    with (
        LocalServer(
            state_dir=tmp_path / "state", isolation="bwrap", disk_size_mb=DISK_MB
        ) as server,
        _api(server) as api,
    ):
        capsule_id = create(api, template="minimal")
        capsule_dir = server.state_dir / "capsules" / capsule_id
        try:
            assert sh(api, capsule_id, "echo hi")["stdout"] == "hi\n"
            mount = _mount_of(capsule_dir / "rw")
            assert mount is not None
            assert _loop_attrs(mount[1]) == {
                "backing_file": str(capsule_dir / _disk.IMAGE_NAME),
                "autoclear": "1",
                "dio": "1",
            }
        finally:
            destroy(api, capsule_id)
        assert _none_bound_to(capsule_dir / _disk.IMAGE_NAME)


@pytest.mark.local
@needs_bwrap
@needs_disks
def test_a_disk_that_fails_while_the_sandbox_starts_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    """The sandbox's host-side shim joins the capsule's cgroups while the new disk is
    mounted; when the mount fails, the shim exits without starting the sandbox."""
    with LocalServer(
        state_dir=tmp_path / "state", isolation="bwrap", disk_size_mb=DISK_MB
    ) as server:
        manager = server._manager
        assert manager is not None
        tree = manager.backend.cgroups
        if tree is None:
            pytest.skip("no cgroups: the sandbox is started after the disk, not beside it")
        attach = manager.disks.attach

        def failing_attach(capsule_dir: Path) -> None:
            raise _disk.DiskError("injected disk failure")

        manager.disks.attach = failing_attach  # type: ignore[method-assign]
        with _api(server) as api:
            r = api.post("/v1/capsules", json={"template": "minimal"})
            assert r.status_code == 202, r.text
            capsule_id = r.json()["id"]
            assert wait_status(api, capsule_id)["status"] == "error"
            cgroup = tree.capsule(capsule_id)
            assert [d for d in cgroup.dirs if d.exists()] == []
            boot_log = server.state_dir / "capsules" / capsule_id / "boot.log"
            assert not boot_log.exists() or b"bwrap" not in boot_log.read_bytes()
            manager.disks.attach = attach  # type: ignore[method-assign]
            healthy = create(api, template="minimal")
            try:
                assert sh(api, healthy, "echo hi")["stdout"] == "hi\n"
            finally:
                destroy(api, healthy)
            api.delete(f"/v1/capsules/{capsule_id}")
