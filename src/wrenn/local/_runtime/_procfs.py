"""Small readers over ``/proc`` used to find, freeze and measure capsule processes."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from .. import _fdtree

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _pids() -> Iterator[int]:
    try:
        names = os.listdir("/proc")
    except OSError:
        return
    for name in names:
        if name.isdigit():
            yield int(name)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces or ')'.
    close = raw.rfind(")")
    return raw[close + 2 :].split()


def ppid_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def session_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[3]) if fields else None


def find_child(ppid: int) -> int | None:
    """The first child of ``ppid`` (this kernel has no ``/proc/<pid>/task/*/children``)."""
    for pid in _pids():
        if pid > ppid and ppid_of(pid) == ppid:
            return pid
    # Pid numbers wrap; fall back to a full scan.
    for pid in _pids():
        if pid <= ppid and ppid_of(pid) == ppid:
            return pid
    return None


def pid_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def ns_members(ns: str) -> list[int]:
    """Every host pid whose pid namespace is ``ns`` (e.g. ``pid:[4026532181]``)."""
    return [pid for pid in _pids() if pid_ns(pid) == ns]


def session_members(sids: Iterable[int]) -> list[int]:
    wanted = set(sids)
    if not wanted:
        return []
    out = []
    for pid in _pids():
        fields = _stat_fields(pid)
        if fields and int(fields[3]) in wanted:
            out.append(pid)
    return out


def ns_pid(host_pid: int) -> int | None:
    """The pid as seen from inside the innermost pid namespace (``NSpid`` last field)."""
    try:
        with open(f"/proc/{host_pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except OSError:
        return None
    return None


def cpu_seconds(pids: Iterable[int]) -> float:
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            ticks += int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / CLK_TCK


def rss_bytes(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


def state_of(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def disk_usage(path: str, limit: int = 200_000) -> int:
    """Allocated bytes under ``path`` (bounded walk by fd; symlinks never followed).

    The tree is the capsule's: walked by file descriptor, iteratively, so a
    directory swapped for a symlink is not entered and depth cannot overflow.
    A capsule's ``rw`` that is a mount point is its own disk image (``_disk``):
    its filesystem's count is exact and costs one call.
    """
    if os.path.ismount(path):
        st = os.statvfs(path)
        return (st.f_blocks - st.f_bfree) * st.f_frsize
    return _fdtree.disk_usage(path, limit)


def mem_total_mb() -> int | None:
    """The host's RAM in MiB (``MemTotal``), or None where /proc cannot say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
