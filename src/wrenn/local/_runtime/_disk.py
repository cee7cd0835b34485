"""A bounded filesystem per capsule: an ext4 image on a loop device, mounted over ``rw/``.

Every writable directory of a capsule (``/root``, ``/tmp``, ``/home``,
``/workspace``) lives in ``<capsule dir>/rw``.  When the server runs as root
and loop devices work, that directory is the mount point of a sparse ext4
image ``<capsule dir>/disk.img`` of ``disk_size_mb``: a capsule that fills it
gets ``ENOSPC`` inside its own filesystem and nobody else's disk fills.  The
image only takes the blocks that were written, keeps its files across a server
restart, and is formatted with no reserved blocks so the whole size is usable.

Mounts live in the host's mount namespace, so a server killed with ``kill -9``
leaves them behind.  Each server holds an ``flock`` on its state dir's
``disks.lock``; at start-up, a mount of a capsule image whose state dir has no
live holder is detached (lazily, so a straggling descriptor cannot make it
fail), and the loop device goes with it (it is marked ``autoclear``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import subprocess
from pathlib import Path

from . import _loop
from ._base import HOST_ENV

log = logging.getLogger("wrenn.local")

DEFAULT_DISK_SIZE_MB = 5120
# ext4 needs a few MiB of its own; a sparse image of 16 TiB still costs nothing.
MIN_DISK_SIZE_MB = 16
MAX_DISK_SIZE_MB = 16 * 1024 * 1024
LOCK_NAME = "disks.lock"
IMAGE_NAME = "disk.img"
_TOOL_TIMEOUT = 30.0
# nosuid/nodev: the capsule's files never act as setuid programs or device nodes,
# for the capsule or for anything on the host that walks the state dir.
_MOUNT_OPTIONS = "nosuid,nodev,noatime"
# A journal (made lazily) so that a kill -9 of the server cannot leave a capsule
# with a corrupt filesystem; no reserved blocks: a capsule's disk is all its own.
_MKFS_ARGS = ("-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1")


class DiskError(RuntimeError):
    pass


def _unescape(field: str) -> str:
    """A /proc/self/mountinfo path: spaces, tabs, newlines and backslashes are octal."""
    out, i = [], 0
    while i < len(field):
        octal = field[i + 1 : i + 4]
        if field[i] == "\\" and len(octal) == 3 and octal.isdigit():
            out.append(chr(int(octal, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _mounts() -> list[tuple[str, str, str]]:
    """(mount point, filesystem type, source) of every mount this process sees."""
    out = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                head, sep, tail = line.partition(" - ")
                fields, rest = head.split(), tail.split()
                if sep and len(fields) > 4 and len(rest) > 1:
                    out.append((_unescape(fields[4]), rest[0], _unescape(rest[1])))
    except OSError:
        pass
    return out


def mount_points() -> list[str]:
    return [point for point, _, _ in _mounts()]


def _is_capsule_disk(point: Path, fstype: str, source: str) -> bool:
    """True only for a mount made by ``Disks.attach``: ext4 from a loop device whose
    backing file is the ``disk.img`` beside the mount point (nobody else's mount)."""
    if fstype != "ext4" or not source.startswith("/dev/loop"):
        return False
    try:
        backing = Path(f"/sys/block/{os.path.basename(source)}/loop/backing_file").read_text()
    except OSError:
        return False
    backing = backing.rstrip("\n").removesuffix(" (deleted)")
    return backing == str(point.parent / IMAGE_NAME)


def _run(argv: list[str]) -> str:
    """Run a host tool with the fixed host environment; its stdout, or DiskError."""
    try:
        proc = subprocess.run(
            argv,
            env=HOST_ENV,
            cwd="/",
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_TOOL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DiskError(f"{os.path.basename(argv[0])}: {exc}") from exc
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip() or f"exit {proc.returncode}"
        raise DiskError(f"{os.path.basename(argv[0])}: {err}")
    return proc.stdout.decode("utf-8", "replace")


def _mount_by_syscall(image: Path, mount_point: Path) -> None:
    """Mount ``image`` through a loop device of its own that does direct I/O.

    Direct I/O keeps a capsule's writes out of the host's page cache: without
    it, a capsule that rewrites its disk fills the host's dirty pages and every
    fsync on the host filesystem (the server's own database among them) waits
    behind that writeback. Its writes are then paced by its own cgroup instead.

    In-process ioctls and mount(2) (see ``_loop``); ``LoopUnsupported`` where
    this kernel cannot, and then ``_mount_by_tools`` does the same.
    """
    try:
        fd, device = _loop.bind(image)
    except OSError as exc:
        raise DiskError(f"loop device for {image.name}: {exc}") from exc
    try:
        _loop.mount(device, mount_point, "ext4", _MOUNT_OPTIONS)
    except BaseException as exc:
        # Our descriptor is the device's only user: unbound now, nothing leaks.
        _loop.unbind(fd)
        if isinstance(exc, OSError):
            raise DiskError(str(exc)) from exc
        raise
    # The mount holds the device now; autoclear unbinds it with the mount.
    os.close(fd)


def _mount_by_tools(image: Path, mount_point: Path) -> None:
    """``_mount_by_syscall`` with losetup and mount, for kernels without LOOP_CONFIGURE."""
    device = _run([_tool("losetup"), "--find", "--show", "--direct-io=on", str(image)]).strip()
    if not device.startswith("/dev/loop"):
        raise DiskError(f"losetup gave no loop device: {device!r}")
    try:
        _run([_tool("mount"), "-o", _MOUNT_OPTIONS, device, str(mount_point)])
    finally:
        # Detaching a device in use marks it autoclear: it goes with its last
        # mount (and, if the mount failed, right now).
        with contextlib.suppress(DiskError):
            _run([_tool("losetup"), "--detach", device])


def _make(image: Path, size_mb: int) -> None:
    fd = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size_mb * 1024 * 1024)
    finally:
        os.close(fd)
    _run([_tool("mkfs.ext4"), *_MKFS_ARGS, str(image)])


def _sparse_copy(src: Path, dst: Path) -> None:
    """Copy ``src`` to a new file ``dst``, data extents only: holes stay holes."""
    fd_in = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fd_out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            _copy_extents(fd_in, fd_out)
        except BaseException:
            with contextlib.suppress(OSError):
                dst.unlink()  # ours (O_EXCL): never a half image
            raise
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)


def _copy_extents(fd_in: int, fd_out: int) -> None:
    size = os.fstat(fd_in).st_size
    os.ftruncate(fd_out, size)
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd_in, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                return  # only a hole is left
            raise
        end = os.lseek(fd_in, start, os.SEEK_HOLE)
        while start < end:
            copied = os.copy_file_range(fd_in, fd_out, end - start, start, start)
            if copied == 0:
                raise DiskError("the blank image shrank while it was copied")
            start += copied
        offset = end


def _detach(mount_point: str) -> None:
    # MNT_DETACH: gone from the namespace now, freed when its last user closes.
    _run([_tool("umount"), "--lazy", mount_point])


def _tool(name: str) -> str:
    found = shutil.which(name, path=HOST_ENV["PATH"])
    if found is None:
        raise DiskError(f"{name} not found")
    return found


def why_unavailable() -> str | None:
    """None when per-capsule disk images can be made and mounted here, else why not."""
    if os.geteuid() != 0:
        return "the server is not root (mounting a capsule's disk image needs root)"
    if not os.path.exists("/dev/loop-control"):
        return "no loop devices (/dev/loop-control is missing)"
    # losetup and mount only for kernels without LOOP_CONFIGURE (see ``_loop``);
    # the trial mount at start-up finds out which way works.
    needed = ["mkfs.ext4", "umount"]
    if not _loop.available():
        needed += ["losetup", "mount"]
    for name in needed:
        if shutil.which(name, path=HOST_ENV["PATH"]) is None:
            return f"{name} not found"
    return None


class Disks:
    """The disk images of one server's capsules (``enabled`` False: plain directories)."""

    def __init__(self, state_dir: Path, size_mb: int = DEFAULT_DISK_SIZE_MB) -> None:
        self.state_dir = state_dir
        self.size_mb = size_mb
        self._lock_fd: int | None = None
        self._blank = Path()
        # Capsule dirs whose image this server mounted (and has not detached).
        self._attached: set[Path] = set()
        # Loop devices by ioctl and mount(2) in-process, else the host tools.
        self.by_syscall = _loop.available()
        self.reason = why_unavailable()
        if self.reason is None:
            try:
                self._lock_fd = self._hold_lock(state_dir)
                self._trial()
            except (OSError, DiskError) as exc:
                self.reason = f"disk images do not work here: {exc}"
                self.close()
        self.enabled = self.reason is None

    @staticmethod
    def _hold_lock(state_dir: Path) -> int:
        fd = os.open(state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise DiskError(f"another server uses {state_dir}") from exc
            raise
        return fd

    def _trial(self) -> None:
        """Format the blank image once, and mount a copy, so a broken setup is found at start.

        Every capsule's disk is then a sparse copy of the blank (about 2.7 MB of
        ext4 tables for 5 GiB, copied in ~2 ms), which is quicker than ``mkfs``.
        """
        for stale in self.state_dir.glob(".blank-*.img"):
            stale.unlink()
        self._blank = self.state_dir / f".blank-{self.size_mb}.img"
        _make(self._blank, self.size_mb)
        trial = self.state_dir / ".disk-trial"
        with contextlib.suppress(OSError):
            if os.path.ismount(trial / "mnt"):
                _detach(str(trial / "mnt"))
        shutil.rmtree(trial, ignore_errors=True)
        (trial / "mnt").mkdir(parents=True)
        try:
            _sparse_copy(self._blank, trial / IMAGE_NAME)
            self._mount(trial / IMAGE_NAME, trial / "mnt")
            _detach(str(trial / "mnt"))
        finally:
            shutil.rmtree(trial, ignore_errors=True)

    def _mount(self, image: Path, mount_point: Path) -> None:
        if self.by_syscall:
            try:
                _mount_by_syscall(image, mount_point)
                return
            except _loop.LoopUnsupported as exc:
                log.info("wrenn.local: capsule disks are mounted with losetup and mount: %s", exc)
                self.by_syscall = False
        _mount_by_tools(image, mount_point)

    def sweep_stale(self) -> int:
        """Detach capsule disks of servers that died; how many were detached."""
        if not self.enabled:
            return 0
        detached = 0
        for point, fstype, source in _mounts():
            path = Path(point)
            # <state dir>/capsules/<id>/rw, ours or another (dead) server's.
            if path.name != "rw" or path.parent.parent.name != "capsules":
                continue
            if not _is_capsule_disk(path, fstype, source):
                continue
            state_dir = path.parent.parent.parent
            if state_dir != self.state_dir and self._held(state_dir):
                continue
            with contextlib.suppress(DiskError):
                _detach(point)
                detached += 1
        if detached:
            log.info("wrenn.local: detached %d capsule disk(s) left by a stopped server", detached)
        return detached

    @staticmethod
    def _held(state_dir: Path) -> bool:
        """True when a live server holds ``state_dir``'s lock (or it cannot be told)."""
        try:
            fd = os.open(state_dir / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return False  # the state dir was removed under its mounts
        except OSError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False

    def has_image(self, capsule_dir: Path) -> bool:
        """The capsule has a disk image already (its files may be on it)."""
        return self.enabled and (capsule_dir / IMAGE_NAME).exists()

    def attach(self, capsule_dir: Path) -> None:
        """Mount the capsule's image over ``rw/`` (made on first use); idempotent."""
        if not self.enabled:
            return
        rw = capsule_dir / "rw"
        if os.path.ismount(rw):
            self._attached.add(capsule_dir)
            return
        image = capsule_dir / IMAGE_NAME
        rw.mkdir(parents=True, exist_ok=True)
        if not image.exists():
            if any(rw.iterdir()):
                # A capsule from before disk images: keep its files where they are.
                log.warning("capsule dir %s predates disk images: no quota", capsule_dir)
                return
            _sparse_copy(self._blank, image)
        self._mount(image, rw)
        self._attached.add(capsule_dir)
        # ext4's fresh root holds lost+found, which no capsule expects in its rw layer.
        with contextlib.suppress(OSError):
            (rw / "lost+found").rmdir()

    def detach(self, capsule_dir: Path) -> None:
        if not self.enabled:
            return
        self._attached.discard(capsule_dir)
        rw = capsule_dir / "rw"
        if os.path.ismount(rw):
            _detach(str(rw))

    def used_bytes(self, capsule_dir: Path) -> int | None:
        """Bytes in use on the capsule's mounted disk (one statfs, cheap enough for the
        event loop: no thread hand-off), or None when it has no disk mounted."""
        if capsule_dir not in self._attached:
            return None
        try:
            st = os.statvfs(capsule_dir / "rw")
        except OSError:
            return None
        return (st.f_blocks - st.f_bfree) * st.f_frsize

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
