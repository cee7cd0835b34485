"""Change a mounted filesystem's own options in-process: ``fspick`` + ``fsconfig`` (Linux >= 5.2).

The classic way, ``nsenter --mount --root ... mount -o remount,OPTS PATH``, costs
two host processes per capsule boot (~3 ms, more on a busy host) and, being a
``mount(2)`` remount, also resets the mount's own flags (bubblewrap's
``nosuid,noexec`` on the capsule's devpts went missing that way).  ``fspick``
opens the filesystem under ``path`` (resolved from ``dir_fd``, which may be a
directory of another mount namespace) and ``fsconfig`` reconfigures only its
superblock: the mount's flags stay as they are.

Where the system calls are missing or filtered (a seccomp profile), ``Unavailable``
says so and the caller keeps the classic way.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from collections.abc import Callable

# The same numbers on every architecture that has them in the common table.
_SYSCALLS = {"x86_64": (431, 433), "aarch64": (431, 433)}
_FSCONFIG_SET_STRING = 1
_FSCONFIG_CMD_RECONFIGURE = 7
_FSPICK_CLOEXEC = 0x1
_FSPICK_SYMLINK_NOFOLLOW = 0x2
_FSPICK_NO_AUTOMOUNT = 0x4


class Unavailable(Exception):
    """This kernel (or its seccomp filter) does not offer fspick/fsconfig here."""


def _syscall() -> Callable[..., int] | None:
    try:
        call: Callable[..., int] = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    return call


_CALL = _syscall()


def _check(result: int, what: str) -> int:
    if result >= 0:
        return result
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EPERM):
        raise Unavailable(f"{what}: {os.strerror(code)}")
    raise OSError(code, f"{what}: {os.strerror(code)}")


def reconfigure(dir_fd: int, path: str, options: dict[str, str]) -> None:
    """Set ``options`` on the filesystem mounted at ``path`` (relative to ``dir_fd``).

    Options not given fall back to the filesystem's defaults, as with a remount.
    ``path``'s last component is not followed if it is a symlink.
    """
    numbers = _SYSCALLS.get(platform.machine())
    if _CALL is None or numbers is None:
        raise Unavailable(f"no fspick/fsconfig numbers for {platform.machine()}")
    fsconfig, fspick = numbers
    flags = _FSPICK_CLOEXEC | _FSPICK_SYMLINK_NOFOLLOW | _FSPICK_NO_AUTOMOUNT
    fd = _check(
        _CALL(fspick, ctypes.c_int(dir_fd), os.fsencode(path), ctypes.c_uint(flags)),
        f"fspick {path}",
    )
    try:
        for key, value in options.items():
            _check(
                _CALL(
                    fsconfig,
                    ctypes.c_int(fd),
                    ctypes.c_uint(_FSCONFIG_SET_STRING),
                    key.encode(),
                    value.encode(),
                    ctypes.c_int(0),
                ),
                f"fsconfig {path} {key}={value}",
            )
        _check(
            _CALL(
                fsconfig,
                ctypes.c_int(fd),
                ctypes.c_uint(_FSCONFIG_CMD_RECONFIGURE),
                None,
                None,
                ctypes.c_int(0),
            ),
            f"reconfigure {path}",
        )
    finally:
        os.close(fd)
