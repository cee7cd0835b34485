"""The interface every isolation backend implements, plus shared helpers.

``Sandbox`` is what every backend provides; the machinery of backends whose
capsule processes are host processes (launch argv, host pids, freezer, host
usage) is ``HostSandbox`` in ``_host``.
"""

from __future__ import annotations

import abc
import asyncio
import fcntl
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from .. import _fdtree
from . import _procfs
from ._cgroup import CapsuleCgroup, Limits
from ._contract import (
    BootError,
    Capabilities,
    HostPaths,
    Probe,
    Unsupported,
    Usage,
)
from ._ids import SERVER_IDS, Ids
from ._process import CapsuleProcess
from ._terminal import CapsuleTerminal

# Directories a capsule may write; each is a per-capsule host directory.
WRITABLE_DIRS = ("root", "tmp", "home", "workspace")
# Where the server-owned directory ``<capsule dir>/run`` appears inside an isolated
# capsule.  The server puts files there that it must later trust (the code runner's
# kernel sockets): capsule code can add entries, but never swap the directory itself.
RUN_DIR_IN_CAPSULE = "/run/wrenn"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The whole environment of every host-side helper (bwrap, nsenter, setpriv, the
# cgroup shim).  Never the server's own environment, which may hold the app's
# secrets, and never a request's ``envs``: those run before any namespace or
# capability is dropped (an ``LD_PRELOAD`` there would run capsule code as host
# root), so request variables reach only the final command, inside the capsule.
HOST_ENV = {"PATH": DEFAULT_PATH, "LC_ALL": "C"}

log = logging.getLogger("wrenn.local")

# Every member of a sandbox that code outside ``_runtime`` may use: the manager,
# files, PTY, processes, metrics and kernels talk to a backend through these only.
INTERFACE = frozenset(
    {
        "capsule_id",
        "kind",
        "capabilities",
        "pty_max",
        # lifecycle
        "boot",
        "destroy",
        "alive",
        "kill_now",
        "reap_orphans",
        # pause
        "freeze",
        "thaw",
        "is_frozen",
        # processes (a ``CapsuleProcess``, used through ``PROCESS_INTERFACE``)
        "start_process",
        "home_env",
        "run_dir_for_processes",
        # terminals (a ``CapsuleTerminal``, used through ``TERMINAL_INTERFACE``)
        "open_terminal",
        # metrics
        "usage",
        # host filesystem (``capabilities.host_filesystem``)
        "open_root",
        "host_paths",
        # the capsule's files otherwise
        "guest_files",
        # the writable layer at rest (class methods, by capsule directory)
        "save_layer",
        "load_layer",
        "layer_bytes",
    }
)

TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441


class Sandbox(abc.ABC):
    """One capsule's live isolation context: the interface of every backend.

    Code outside ``_runtime`` uses only the members listed in ``INTERFACE``
    (tests/test_runtime_boundary.py checks it); everything else is the backend's own.
    A backend subclasses this, sets ``kind`` and ``CAPABILITIES``, implements
    ``probe`` and the abstract methods, and is registered in ``_registry``.
    Nothing here assumes that capsule processes are host processes: a backend
    whose processes are subclasses ``HostSandbox`` (``_host``) instead.
    """

    # The name the registry knows the backend by (``LocalServer(isolation=...)``).
    kind: ClassVar[str]
    # What the backend can do; ``capabilities`` adds what this capsule got (limits).
    CAPABILITIES: ClassVar[Capabilities]
    # Terminals one capsule may hold at once, when the backend bounds them.
    pty_max: ClassVar[int | None] = None
    capsule_id: str

    def __init__(
        self,
        capsule_id: str,
        capsule_dir: Path,
        cgroup: CapsuleCgroup | None,
        ro_binds: tuple[str, ...] = (),
        limits: Limits | None = None,
        *,
        freeze_by_cgroup: bool = True,
        ids: Ids = SERVER_IDS,
    ) -> None:
        self.capsule_id = capsule_id
        # The host uid/gid of the capsule's root (see _ids).
        self.ids = ids
        self.dir = capsule_dir
        self.rw_dir = capsule_dir / "rw"
        self.run_dir = capsule_dir / "run"
        # Host directories shown read-only at the same path inside the capsule.
        self.ro_binds = ro_binds
        # The capsule's own cgroups (limits, freeze, kill); None when the server
        # may not create cgroups, and then nothing is limited.
        self.cgroup = cgroup
        self.limits = limits or Limits()
        # Pause by the cgroup freezer rather than by signals (the registry's choice).
        self.freeze_by_cgroup = freeze_by_cgroup

    @classmethod
    @abc.abstractmethod
    def probe(cls) -> Probe:
        """Whether this backend works here (may boot a throwaway sandbox)."""

    @property
    def capabilities(self) -> Capabilities:
        # A host backend's limits are its cgroups; a VM's are its own by construction.
        return replace(
            self.CAPABILITIES, limits=self.CAPABILITIES.limits or self.cgroup is not None
        )

    def host_paths(self) -> HostPaths:
        self._require_host_filesystem()
        return HostPaths(self.rw_dir, self.run_dir, self.ids.owner)

    def _require_host_filesystem(self) -> None:
        if not self.capabilities.host_filesystem:
            raise Unsupported(f"the {self.kind} backend has no host filesystem")

    # The writable layer at rest (running, paused or stopped): by capsule directory,
    # since a paused capsule of an earlier server has no sandbox.  Blocking calls.
    # Copies go by file descriptor, never by host path (see ``_fdtree``): capsule
    # code owns the tree.  Links stay links; FIFOs and sockets are skipped.
    @classmethod
    def save_layer(cls, capsule_dir: Path, dest: Path, owner: tuple[int, int]) -> None:
        """Copy the capsule's writable layer into ``dest`` (a new template dir)."""
        _fdtree.copy_tree(capsule_dir / "rw", dest / "rw", owner)

    @classmethod
    def load_layer(cls, src: Path, capsule_dir: Path, owner: tuple[int, int] | None) -> None:
        """Seed a new capsule's writable layer from ``src`` (a template dir)."""
        _fdtree.copy_tree(src / "rw", capsule_dir / "rw", owner)

    @classmethod
    def layer_bytes(cls, capsule_dir: Path) -> int:
        """Allocated size of the capsule's writable layer (a bounded walk)."""
        return _procfs.disk_usage(str(capsule_dir / "rw"))

    def make_cgroup(self) -> None:
        """Create the capsule's cgroups with its limits (before anything of it runs)."""
        if self.cgroup is not None:
            try:
                self.cgroup.create(self.limits)
            except OSError as exc:
                self.cgroup.remove(timeout=0)
                raise BootError(f"capsule cgroup: {exc}") from exc

    def in_cgroup(self, argv: list[str], *, held: bool = False) -> list[str]:
        """``argv`` prefixed so that it starts inside the capsule's cgroups;
        ``held``: it then waits for a line on its stdin (see HELD_JOIN_SCRIPT)."""
        return argv if self.cgroup is None else [*self.cgroup.join_argv(held=held), *argv]

    def remove_cgroup(self) -> None:
        """Synchronous teardown of the cgroups (boot failures)."""
        if self.cgroup is not None:
            self.cgroup.kill()
            self.cgroup.remove()

    async def release_cgroup(self, timeout: float = 3.0) -> None:
        """Kill what is left in the capsule's cgroups and remove them.

        Waits on the loop, not in a sleep: the killed host-side wrappers are our
        children, reaped by their HostProcess callbacks on this very loop.
        """
        if self.cgroup is None:
            return
        self.cgroup.kill()
        deadline = time.monotonic() + timeout
        while not self.cgroup.try_remove():
            if time.monotonic() > deadline:
                log.warning("capsule %s: cgroup not removed", self.capsule_id)
                return
            self.cgroup.kill()
            self.reap_orphans()
            await asyncio.sleep(0.01)

    @abc.abstractmethod
    def kill_now(self) -> None:
        """SIGKILL every process of the capsule, synchronously (last resort at shutdown)."""

    @abc.abstractmethod
    def start_process(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        *,
        want_pid: bool = True,
    ) -> CapsuleProcess:
        """Start ``argv`` in the capsule (``env`` is its whole environment, ``cwd`` a
        capsule path), without a terminal (see ``open_terminal``).  ``want_pid``: the
        caller will ask ``resolve()`` for its pid.  A failed start raises ``OSError``.
        """

    def reap_orphans(self) -> int:
        """Reap capsule processes re-parented to the server (subreaper); returns how many.

        Nothing to do by default: inside a pid namespace the capsule's own init
        adopts and reaps orphans, and a backend without host processes has none.
        """
        return 0

    async def boot(self, prepare: Callable[[], Awaitable[None]] | None = None) -> None:
        """Start the sandbox.

        ``prepare`` readies the writable layer (mounts the capsule's disk over
        ``rw/``).  A backend runs it, then makes the layer's skeleton, before
        anything uses the layer; it may start what does not need the layer
        first, so that the two overlap.
        """
        await self._boot(prepare)

    @abc.abstractmethod
    async def _boot(self, prepare: Callable[[], Awaitable[None]] | None) -> None: ...

    @abc.abstractmethod
    def open_root(self) -> int:
        """A directory fd of ``/`` as the capsule sees it; the caller closes it."""

    # Any, not ``wrenn.local._files.CapsuleFiles``: the runtime must not import the
    # server's modules (tests/test_runtime_boundary.py).  The manager stores the
    # result as a CapsuleFiles, so mypy checks a backend's override there.
    def guest_files(self) -> Any:
        """The capsule's files when ``capabilities.host_filesystem`` is False: a
        ``wrenn.local._files.CapsuleFiles`` (reached without host paths, e.g.
        through a guest agent).  Backends with host files use ``open_root``."""
        raise Unsupported(f"the {self.kind} backend has no files of its own")

    @abc.abstractmethod
    async def destroy(self) -> None: ...

    @property
    @abc.abstractmethod
    def alive(self) -> bool: ...

    def home_env(self) -> dict[str, str]:
        return {"PATH": DEFAULT_PATH, "HOME": "/root", "USER": "root", "LOGNAME": "root"}

    def run_dir_for_processes(self) -> str:
        """The path under which processes of this capsule see ``run_dir``."""
        return RUN_DIR_IN_CAPSULE

    @abc.abstractmethod
    def open_terminal(
        self, argv: list[str], env: dict[str, str], cwd: str, cols: int, rows: int
    ) -> CapsuleTerminal:
        """Start ``argv`` (as ``start_process``) on a new terminal of ``cols`` x
        ``rows``; call it on the loop thread.  At most ``pty_max`` at once when that
        is set (beyond it: ``OSError`` ENOSPC); a failed start raises ``OSError``,
        a backend without terminals ``Unsupported``."""

    @abc.abstractmethod
    async def usage(self) -> Usage:
        """CPU seconds and RSS of every capsule process, and its writable layer's size."""

    @abc.abstractmethod
    async def freeze(self) -> None:
        """Pause every process of the capsule (``thaw`` resumes them).

        With ``capabilities.memory_snapshots`` the pause is also written to disk:
        a frozen capsule destroyed by a server's shutdown comes back, processes and
        all, from its next ``boot``.
        """

    @abc.abstractmethod
    async def thaw(self) -> None: ...

    @property
    @abc.abstractmethod
    def is_frozen(self) -> bool: ...


def ensure_rw_skeleton(rw_dir: Path, owner: tuple[int, int] | None = None) -> None:
    """The writable dirs and the run dir, owned by the capsule's root when ``owner``."""
    for name in WRITABLE_DIRS:
        (rw_dir / name).mkdir(parents=True, exist_ok=True)
    ensure_run_dir(rw_dir.parent, owner)
    if owner is not None:
        for path in (rw_dir, *(rw_dir / name for name in WRITABLE_DIRS)):
            os.chown(path, *owner, follow_symlinks=False)
    os.chmod(rw_dir / "tmp", 0o1777)
    os.chmod(rw_dir / "root", 0o700)


def ensure_run_dir(capsule_dir: Path, owner: tuple[int, int] | None = None) -> None:
    """The capsule's run dir (beside ``rw/``, not on its disk), owned by its root when ``owner``."""
    (capsule_dir / "run").mkdir(parents=True, exist_ok=True)
    if owner is not None:
        os.chown(capsule_dir / "run", *owner, follow_symlinks=False)


def open_pty_from(dir_fd: int, ptmx: str) -> tuple[int, int]:
    """Allocate a pty pair from a specific devpts instance (the sandbox's own).

    ``dir_fd`` (closed here) is the capsule root; ``ptmx`` is relative to it.
    """
    try:
        master = os.open(
            ptmx, os.O_RDWR | os.O_NOCTTY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd
        )
    finally:
        os.close(dir_fd)
    try:
        fcntl.ioctl(master, TIOCSPTLCK, b"\0\0\0\0")
        slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
    except OSError:
        os.close(master)
        raise
    return master, int(slave)


async def read_until(fd: int, marker: bytes, timeout: float) -> bytes:
    """Read a non-blocking fd on the running loop until ``marker`` shows up or EOF."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    buf = bytearray()
    done: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            if not done.done():
                done.set_exception(exc)
            return
        buf.extend(chunk)
        if (not chunk or marker in buf) and not done.done():
            done.set_result(None)

    loop.add_reader(fd, on_readable)
    try:
        await asyncio.wait_for(done, timeout)
    finally:
        loop.remove_reader(fd)
    return bytes(buf)
