"""Pause/resume of a capsule's processes.

cgroup v2 ``cgroup.freeze`` is atomic and invisible to the processes, so it is
preferred when the server may create a cgroup (root).  Otherwise every member pid
gets SIGSTOP/SIGCONT; members are enumerated repeatedly because a process may
fork while we are stopping its siblings.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

_ROUNDS = 6


def _cgroup2_mount() -> Path | None:
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    return Path(left.split()[4])
    except OSError:
        return None
    return None


def cgroup_parent(tag: str) -> Path | None:
    """Create (or reuse) a cgroup v2 directory for this server; None when not allowed."""
    mount = _cgroup2_mount()
    if mount is None:
        return None
    own = "/"
    with contextlib.suppress(OSError), open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                own = line[3:].strip() or "/"
    # Our own cgroup may not be visible from this mount (hybrid layouts, cgroupns).
    base = mount / own.lstrip("/")
    if not base.is_dir():
        base = mount
    _sweep_stale(base)
    parent = base / tag
    try:
        parent.mkdir(exist_ok=True)
        probe = parent / "probe"
        probe.mkdir(exist_ok=True)
        ok = (probe / "cgroup.freeze").exists() and os.access(probe / "cgroup.procs", os.W_OK)
        probe.rmdir()
    except OSError:
        with contextlib.suppress(OSError):
            parent.rmdir()
        return None
    return parent if ok else None


def _sweep_stale(base: Path) -> None:
    """Remove empty cgroups left by a wrenn.local server that was killed."""
    with contextlib.suppress(OSError):
        for parent in base.glob("wrenn-local-*-*"):
            pid = parent.name.split("-")[2]
            if not pid.isdigit() or Path(f"/proc/{pid}").exists():
                continue
            with contextlib.suppress(OSError):
                for child in parent.iterdir():
                    if child.is_dir():
                        child.rmdir()
                parent.rmdir()


class Freezer:
    """Freeze/thaw the pids returned by ``members()``; ``extra_cont()`` gets SIGCONT too."""

    def __init__(
        self,
        members: Callable[[], list[int]],
        cgroup: Path | None,
        extra_cont: Callable[[], list[int]] | None = None,
    ) -> None:
        self._members = members
        self._cgroup = cgroup
        self._extra_cont = extra_cont or (lambda: [])
        self._stopped: set[int] = set()
        self.frozen = False

    @property
    def mode(self) -> str:
        return "cgroup" if self._cgroup is not None else "sigstop"

    def adopt(self, pid: int) -> None:
        """Move a process into the capsule cgroup (children follow automatically)."""
        if self._cgroup is not None:
            with contextlib.suppress(OSError):
                self._cgroup.mkdir(exist_ok=True)
                (self._cgroup / "cgroup.procs").write_text(str(pid))

    def freeze(self) -> None:
        if self._cgroup is not None:
            self._cgroup.mkdir(exist_ok=True)
            self._freeze_cgroup(self._cgroup)
        else:
            self._freeze_signals()
        self.frozen = True

    def thaw(self) -> None:
        if self._cgroup is not None:
            (self._cgroup / "cgroup.freeze").write_text("0")
        else:
            for pid in set(self._members()) | self._stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            self._stopped.clear()
        # nsenter stops itself when its child stops; wake it or it never reaps the child.
        for pid in self._extra_cont():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.frozen = False

    def _freeze_cgroup(self, cg: Path) -> None:
        (cg / "cgroup.freeze").write_text("1")
        procs = cg / "cgroup.procs"
        for _ in range(_ROUNDS):
            inside = {int(x) for x in procs.read_text().split()}
            outside = [p for p in self._members() if p not in inside]
            if not outside:
                break
            for pid in outside:
                with contextlib.suppress(OSError):
                    procs.write_text(str(pid))
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if "frozen 1" in (cg / "cgroup.events").read_text():
                return
            time.sleep(0.002)

    def _freeze_signals(self) -> None:
        for _ in range(_ROUNDS):
            fresh = [p for p in self._members() if p not in self._stopped]
            if not fresh:
                break
            for pid in fresh:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
                self._stopped.add(pid)

    def remove(self) -> None:
        if self._cgroup is not None:
            with contextlib.suppress(OSError):
                (self._cgroup / "cgroup.freeze").write_text("0")
            for _ in range(50):
                try:
                    self._cgroup.rmdir()
                    return
                except FileNotFoundError:
                    return
                except OSError:
                    time.sleep(0.01)
