"""Loop devices and mounts by system call: the quick path of ``_disk``.

``losetup --find``, ``mount`` and ``losetup --detach`` cost three host processes
(~14 ms) per capsule create.  The same work in-process is an ioctl on
``/dev/loop-control`` for a free device number, one ``LOOP_CONFIGURE`` (Linux
>= 5.8) that binds the image with ``autoclear`` and direct I/O in a single
step, and one ``mount(2)``.  ``autoclear`` is set before the mount, so the
device goes away with its last user: the mount, or this module's descriptor if
the mount fails.  Nothing here changes what gets mounted or how: the caller
passes the same options it gives the ``mount`` tool.

A kernel without ``LOOP_CONFIGURE`` answers ``EINVAL`` (or ``ENOTTY``), and a
host without device nodes for new loop devices ``ENOENT``: those raise
``LoopUnsupported``, and the caller uses the tools instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
from collections.abc import Callable
from pathlib import Path

LOOP_CONTROL = "/dev/loop-control"
LOOP_CTL_GET_FREE = 0x4C82
LOOP_CONFIGURE = 0x4C0A
LOOP_CLR_FD = 0x4C01
LO_FLAGS_AUTOCLEAR = 4
LO_FLAGS_DIRECT_IO = 16
# Another process may bind the free device we were given before we do (EBUSY).
CONFIGURE_ATTEMPTS = 16

# mount(8) options that are mount(2) flags; every other option is the
# filesystem's own and goes in the data string, where the filesystem refuses
# what it does not know (so a typo fails the mount instead of being dropped).
_FLAG_OPTIONS = {
    "rw": 0,
    "ro": 0x1,  # MS_RDONLY
    "nosuid": 0x2,  # MS_NOSUID
    "nodev": 0x4,  # MS_NODEV
    "noexec": 0x8,  # MS_NOEXEC
    "sync": 0x10,  # MS_SYNCHRONOUS
    "dirsync": 0x80,  # MS_DIRSYNC
    "noatime": 0x400,  # MS_NOATIME
    "nodiratime": 0x800,  # MS_NODIRATIME
    "relatime": 0x200000,  # MS_RELATIME
    "strictatime": 0x1000000,  # MS_STRICTATIME
    "lazytime": 0x2000000,  # MS_LAZYTIME
}


class LoopUnsupported(Exception):
    """This kernel or host cannot do the system-call path; use the tools."""


class _LoopInfo64(ctypes.Structure):
    _fields_ = [
        ("lo_device", ctypes.c_uint64),
        ("lo_inode", ctypes.c_uint64),
        ("lo_rdevice", ctypes.c_uint64),
        ("lo_offset", ctypes.c_uint64),
        ("lo_sizelimit", ctypes.c_uint64),
        ("lo_number", ctypes.c_uint32),
        ("lo_encrypt_type", ctypes.c_uint32),
        ("lo_encrypt_key_size", ctypes.c_uint32),
        ("lo_flags", ctypes.c_uint32),
        ("lo_file_name", ctypes.c_char * 64),
        ("lo_crypt_name", ctypes.c_char * 64),
        ("lo_encrypt_key", ctypes.c_char * 32),
        ("lo_init", ctypes.c_uint64 * 2),
    ]


class _LoopConfig(ctypes.Structure):
    _fields_ = [
        ("fd", ctypes.c_uint32),
        ("block_size", ctypes.c_uint32),  # 0: the kernel picks (the backing device's)
        ("info", _LoopInfo64),
        ("reserved", ctypes.c_uint64 * 8),
    ]


def mount_flags(options: str) -> tuple[int, str]:
    """``"nosuid,nodev,noatime"`` -> (mount(2) flags, the filesystem's data string)."""
    flags, data = 0, []
    for option in filter(None, options.split(",")):
        if option in _FLAG_OPTIONS:
            flags |= _FLAG_OPTIONS[option]
        else:
            data.append(option)
    return flags, ",".join(data)


def _libc_mount() -> Callable[..., int] | None:
    try:
        func = ctypes.CDLL(None, use_errno=True).mount
    except (OSError, AttributeError):
        return None
    func.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_char_p,
    ]
    func.restype = ctypes.c_int
    mount: Callable[..., int] = func
    return mount


_MOUNT = _libc_mount()


def available() -> bool:
    """The C library's ``mount`` can be called (the kernel is asked only by ``bind``)."""
    return _MOUNT is not None


def bind(image: Path, flags: int = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO) -> tuple[int, str]:
    """Bind ``image`` to a free loop device: (an open descriptor of it, its path).

    The device carries ``flags`` from its first moment.  The caller closes the
    descriptor; with ``LO_FLAGS_AUTOCLEAR`` the device is then unbound unless a
    mount still uses it.
    """
    config = _LoopConfig()
    config.info.lo_flags = flags
    config.info.lo_file_name = os.fsencode(image)[:63]
    backing = os.open(image, os.O_RDWR | os.O_CLOEXEC)
    try:
        config.fd = backing
        try:
            control = os.open(LOOP_CONTROL, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise LoopUnsupported(f"{LOOP_CONTROL} is missing") from exc
        try:
            for _ in range(CONFIGURE_ATTEMPTS):
                number = fcntl.ioctl(control, LOOP_CTL_GET_FREE)
                device = f"/dev/loop{number}"
                fd = _configure(device, config)
                if fd is not None:
                    return fd, device
        finally:
            os.close(control)
    finally:
        os.close(backing)
    raise OSError(errno.EBUSY, f"no free loop device after {CONFIGURE_ATTEMPTS} attempts")


def _configure(device: str, config: _LoopConfig) -> int | None:
    """The open, configured device; None when someone else bound it first."""
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise LoopUnsupported(f"{device} has no device node") from exc
    try:
        fcntl.ioctl(fd, LOOP_CONFIGURE, bytes(config))
    except OSError as exc:
        os.close(fd)
        if exc.errno == errno.EBUSY:
            return None
        if exc.errno in (errno.EINVAL, errno.ENOTTY):
            raise LoopUnsupported(f"LOOP_CONFIGURE on {device}: {exc.strerror}") from exc
        raise OSError(exc.errno, f"LOOP_CONFIGURE on {device}: {exc.strerror}") from exc
    return fd


def unbind(fd: int) -> None:
    """Unbind the device behind ``fd`` now (it may be in use), and close ``fd``."""
    try:
        with contextlib.suppress(OSError):
            fcntl.ioctl(fd, LOOP_CLR_FD)
    finally:
        os.close(fd)


def mount(source: str, target: Path, fstype: str, options: str) -> None:
    """``mount -t FSTYPE -o OPTIONS SOURCE TARGET`` as one system call."""
    if _MOUNT is None:
        raise LoopUnsupported("the C library has no mount()")
    flags, data = mount_flags(options)
    result = _MOUNT(
        os.fsencode(source),
        os.fsencode(target),
        fstype.encode(),
        flags,
        data.encode() if data else None,
    )
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"mount {source} on {target}: {os.strerror(code)}")
