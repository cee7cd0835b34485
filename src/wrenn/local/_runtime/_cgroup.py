"""Per-capsule cgroups: resource limits, freezing, killing, and the cgroupns root.

Layout: in every hierarchy used, one server-owned parent
``<the server's own cgroup>/wrenn-local-<pid>-<token>`` and one child per capsule
under it.  The server writes only files of directories it created itself, and
nests under its own cgroup so that any limit already placed on the server (a CI
job's memory cgroup, say) still covers its capsules.

Two layouts are handled:

- pure cgroup v2: the parent enables ``memory``, ``pids`` and ``cpu`` in its own
  ``cgroup.subtree_control`` when its cgroup offers them;
- hybrid (this machine: cgroup2 at ``/sys/fs/cgroup/unified`` with no resource
  controllers, v1 ``memory``, ``pids`` and ``cpu`` beside it): freezing and
  ``cgroup.kill`` use the v2 tree, limits the v1 hierarchies.

Every process of a capsule is placed into all of its cgroups before it runs (see
``JOIN_SCRIPT``): the sandbox init before bubblewrap creates the cgroup namespace,
so that namespace is rooted at the capsule's own cgroup, and each exec before it
enters the capsule's namespaces.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("wrenn.local")

# A capsule's process count is capped so that a fork bomb exhausts its own
# cgroup, not the host (pid_max is 32768 on many hosts).
DEFAULT_PIDS_MAX = 1024
CPU_PERIOD_US = 100_000
_LIMIT_CONTROLLERS = ("memory", "pids", "cpu")

# A host-side shim run with a fixed environment: it writes its own pid into each
# cgroup.procs file given (the paths are server-owned cgroupfs paths, never capsule
# paths), then execs the real command in place, so the command and everything it
# forks start inside the capsule's cgroups.  A failed write aborts the launch
# (exit 125) rather than running the command outside its limits.
_JOIN = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ >"$1" || exit 125; shift; n=$((n - 1)); done; '
)
JOIN_SCRIPT = _JOIN + 'exec "$@"'
# The same, held: once in the cgroups, the shim waits for a line on its stdin
# (EOF aborts, exit 125) before the command runs, with stdin from /dev/null.
# A sandbox boot starts it first and gets the capsule's disk ready meanwhile:
# the first move into a cgroup after a quiet spell waits for an RCU grace
# period (~10 ms here), which then overlaps the disk's mount.
HELD_JOIN_SCRIPT = _JOIN + 'read -r _ || exit 125; exec "$@" </dev/null'


@dataclass(frozen=True)
class Limits:
    """What one capsule may use, from its own create request."""

    vcpus: int = 1
    memory_mb: int = 512
    pids_max: int = DEFAULT_PIDS_MAX
    # The capsule's disk, for a backend whose disk is its own (a VM's); host
    # backends get theirs from the server's disk images instead.
    disk_mb: int | None = None


def _mounts() -> list[tuple[str, Path, set[str]]]:
    """(fstype, mount point, v1 controllers) of every cgroup mount."""
    out: list[tuple[str, Path, set[str]]] = []
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = right.split(" ")
        if len(fields) < 3 or fields[0] not in ("cgroup", "cgroup2"):
            continue
        opts = set(fields[2].split(","))
        out.append((fields[0], Path(left.split()[4]), opts & set(_LIMIT_CONTROLLERS)))
    return out


def _own_paths() -> dict[str, str]:
    """The server's own cgroup per hierarchy: key ``""`` for v2, else each v1 controller."""
    own: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/self/cgroup") as f:
        for line in f:
            parts = line.rstrip("\n").split(":", 2)
            if len(parts) != 3:
                continue
            if parts[0] == "0" and parts[1] == "":
                own[""] = parts[2] or "/"
            for ctrl in parts[1].split(","):
                if ctrl:
                    own[ctrl] = parts[2] or "/"
    return own


def _base(mount: Path, own: str) -> Path:
    # Our own cgroup may not be visible from this mount (a cgroup namespace).
    base = mount / own.lstrip("/")
    return base if base.is_dir() else mount


def _write(path: Path, value: str) -> bool:
    try:
        path.write_text(value)
        return True
    except OSError:
        return False


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


# cgroup v2 cpu.weight of the capsules' parent (a task's default is 100).
CAPSULES_CPU_WEIGHT = 10


class CgroupTree:
    """The server-owned parent cgroups, one per hierarchy in use."""

    def __init__(self, v2: Path | None, v1: dict[str, Path]) -> None:
        self.v2 = v2  # the v2 parent (freeze, kill, cgroupns), if any
        self.v1 = v1  # v1 controller -> parent, for limits v2 cannot set
        self.v2_controllers: set[str] = set()
        if v2 is not None:
            with contextlib.suppress(OSError):
                self.v2_controllers = set(
                    (v2 / "cgroup.subtree_control").read_text().split()
                ) & set(_LIMIT_CONTROLLERS)

    @classmethod
    def create(cls, tag: str) -> CgroupTree | None:
        """Make the parents; None when the server may not create cgroups (not root)."""
        own = _own_paths()
        v2: Path | None = None
        v1: dict[str, Path] = {}
        made: list[Path] = []
        for fstype, mount, controllers in _mounts():
            if fstype == "cgroup2" and v2 is None:
                base = _base(mount, own.get("", "/"))
                _sweep_stale(base)
                parent = base / tag
                try:
                    parent.mkdir(exist_ok=True)
                except OSError:
                    continue
                made.append(parent)
                offered = set()
                with contextlib.suppress(OSError):
                    offered = set((parent / "cgroup.controllers").read_text().split())
                for ctrl in _LIMIT_CONTROLLERS:
                    if ctrl in offered:
                        _write(parent / "cgroup.subtree_control", f"+{ctrl}")
                v2 = parent
            elif fstype == "cgroup":
                for ctrl in controllers:
                    if ctrl in v1:
                        continue
                    base = _base(mount, own.get(ctrl, "/"))
                    _sweep_stale(base)
                    parent = base / tag
                    try:
                        parent.mkdir(exist_ok=True)
                    except OSError:
                        continue
                    made.append(parent)
                    v1[ctrl] = parent
        tree = cls(v2, v1)
        if not tree._usable():
            for parent in made:
                with contextlib.suppress(OSError):
                    parent.rmdir()
            return None
        # v1 controllers that the v2 parent also provides are not needed.
        for ctrl in tree.v2_controllers:
            parent_v1 = tree.v1.pop(ctrl, None)
            if parent_v1 is not None:
                with contextlib.suppress(OSError):
                    parent_v1.rmdir()
        tree._yield_cpu_to_the_server()
        return tree

    def _yield_cpu_to_the_server(self) -> None:
        """All capsules together weigh a fifth of a normal task against the server.

        A capsule's quota (``vcpus``) bounds how much CPU it takes; the weight decides
        who runs first when the server and a busy capsule want the same core, so the
        API answers promptly while a capsule spins. Capsules weigh the same among
        themselves.
        """
        cpu_v2 = self.v2 if "cpu" in self.v2_controllers else None
        if cpu_v2 is not None:
            _write(cpu_v2 / "cpu.weight", str(CAPSULES_CPU_WEIGHT))
            _write(cpu_v2 / "cpu.idle", "1")
        elif "cpu" in self.v1:
            _write(self.v1["cpu"] / "cpu.shares", str(CAPSULES_CPU_WEIGHT * 1024 // 100))
            _write(self.v1["cpu"] / "cpu.idle", "1")

    def _usable(self) -> bool:
        """A probe child can be made and written (root, or a delegated subtree)."""
        parents = [p for p in (self.v2, *self.v1.values()) if p is not None]
        if not parents:
            return False
        for parent in parents:
            probe = parent / "probe"
            try:
                probe.mkdir(exist_ok=True)
                ok = os.access(probe / "cgroup.procs", os.W_OK)
                probe.rmdir()
            except OSError:
                return False
            if not ok:
                return False
        return True

    @property
    def can_freeze(self) -> bool:
        return self.v2 is not None

    @property
    def enforced(self) -> tuple[str, ...]:
        """The limits this tree can apply."""
        return tuple(c for c in _LIMIT_CONTROLLERS if c in self.v2_controllers or c in self.v1)

    def capsule(self, capsule_id: str) -> CapsuleCgroup:
        v2 = self.v2 / capsule_id if self.v2 is not None else None
        dirs: dict[str, Path] = {}
        if v2 is not None:
            for ctrl in self.v2_controllers:
                dirs[ctrl] = v2
        for ctrl, parent in self.v1.items():
            dirs[ctrl] = parent / capsule_id
        return CapsuleCgroup(v2, dirs)

    def cleanup(self) -> None:
        for parent in (self.v2, *self.v1.values()):
            if parent is None:
                continue
            with contextlib.suppress(OSError):
                for child in parent.iterdir():
                    if child.is_dir():
                        child.rmdir()
            with contextlib.suppress(OSError):
                parent.rmdir()


class CapsuleCgroup:
    """The cgroups of one capsule (a v2 directory and/or v1 controller directories)."""

    def __init__(self, v2: Path | None, controllers: dict[str, Path]) -> None:
        self.v2 = v2
        self.controllers = controllers

    @property
    def dirs(self) -> list[Path]:
        out = [self.v2] if self.v2 is not None else []
        for path in self.controllers.values():
            if path not in out:
                out.append(path)
        return out

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def join_argv(self, *, held: bool = False) -> list[str]:
        """The argv prefix that starts a command inside these cgroups (see JOIN_SCRIPT)."""
        files = self.procs_files
        script = HELD_JOIN_SCRIPT if held else JOIN_SCRIPT
        return ["/bin/sh", "-c", script, "sh", str(len(files)), *files]

    def create(self, limits: Limits) -> None:
        """Make the directories and apply ``limits``; raises OSError if a limit cannot be set."""
        for d in self.dirs:
            d.mkdir(exist_ok=True)
        memory = max(limits.memory_mb, 16) * 1024 * 1024
        quota = max(limits.vcpus, 1) * CPU_PERIOD_US
        pids = max(limits.pids_max, 8)
        mem = self.controllers.get("memory")
        if mem is not None:
            if mem == self.v2:
                (mem / "memory.max").write_text(str(memory))
                # No swap: memory_mb is all the capsule gets.
                if (mem / "memory.swap.max").exists():
                    (mem / "memory.swap.max").write_text("0")
            else:
                (mem / "memory.limit_in_bytes").write_text(str(memory))
                # Only present with swap accounting; without it there is no swap
                # limit to set, and swappiness 0 keeps the capsule out of swap.
                if (mem / "memory.memsw.limit_in_bytes").exists():
                    (mem / "memory.memsw.limit_in_bytes").write_text(str(memory))
                _write(mem / "memory.swappiness", "0")
        pid_dir = self.controllers.get("pids")
        if pid_dir is not None:
            (pid_dir / "pids.max").write_text(str(pids))
        cpu = self.controllers.get("cpu")
        if cpu is not None:
            if cpu == self.v2:
                (cpu / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}")
            else:
                (cpu / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
                (cpu / "cpu.cfs_quota_us").write_text(str(quota))

    def pids(self) -> list[int]:
        """Every process in the capsule's cgroups (nested namespaces included)."""
        seen: set[int] = set()
        for d in self.dirs:
            with contextlib.suppress(OSError):
                seen.update(int(x) for x in (d / "cgroup.procs").read_text().split())
        return sorted(seen)

    # freezing -----------------------------------------------------------------
    def freeze(self, timeout: float = 1.0) -> bool:
        """cgroup.freeze the whole capsule; True once the kernel reports it frozen."""
        assert self.v2 is not None
        (self.v2 / "cgroup.freeze").write_text("1")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if "frozen 1" in (self.v2 / "cgroup.events").read_text():
                    return True
            time.sleep(0.002)
        return False

    def thaw(self) -> None:
        assert self.v2 is not None
        (self.v2 / "cgroup.freeze").write_text("0")

    # teardown -----------------------------------------------------------------
    def kill(self) -> None:
        """SIGKILL every process of the capsule, wherever it forked to."""
        if self.v2 is not None and _write(self.v2 / "cgroup.kill", "1"):
            return
        for _ in range(10):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)

    def try_remove(self) -> bool:
        """Remove the directories now if empty; True once all are gone."""
        if self.v2 is not None:
            _write(self.v2 / "cgroup.freeze", "0")
        done = True
        for d in self.dirs:
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                done = False
        return done

    def remove(self, timeout: float = 1.0) -> None:
        """Remove the directories once their processes are gone (they may still be exiting)."""
        if self.v2 is not None:
            _write(self.v2 / "cgroup.freeze", "0")
        deadline = time.monotonic() + timeout
        for d in self.dirs:
            while True:
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        log.warning("could not remove cgroup %s", d)
                        break
                    time.sleep(0.01)
