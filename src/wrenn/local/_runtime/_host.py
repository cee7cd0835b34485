"""The shared part of backends whose capsule processes are host processes.

``HostSandbox`` is what the bubblewrap and plain backends have in common beyond
the general ``Sandbox`` interface: each command is a host process
(``HostProcess``) started from the backend's ``launch()`` argv, and the capsule
is known by its host pids (``member_pids()``, plus the host-side wrappers the
server spawned), which is what pause (a cgroup freeze or SIGSTOP), the last-resort
kill and the usage figures act on.  A backend whose processes are not host
processes (a microVM's, through its guest agent) subclasses ``Sandbox`` instead.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from . import _procfs
from ._base import Sandbox, ensure_rw_skeleton
from ._contract import Launch, Usage
from ._freeze import Freezer
from ._host_process import HostProcess
from ._host_terminal import HostTerminal
from ._process import CapsuleProcess
from ._terminal import CapsuleTerminal


def _measure(pids: list[int], rw_dir: str) -> Usage:
    return Usage(_procfs.cpu_seconds(pids), _procfs.rss_bytes(pids), _procfs.disk_usage(rw_dir))


class HostSandbox(Sandbox):
    """A backend whose capsule processes are host processes.

    A subclass implements ``launch``, ``visible_pid`` and ``member_pids`` (and
    the general abstract methods of ``Sandbox``); it gets ``start_process``,
    pause, ``kill_now``, ``usage`` and terminals (``open_terminal`` over
    ``open_pty``, a host pty pair unless the backend has its own) from here.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # ``Sandbox``'s arguments, as they are.
        super().__init__(*args, **kwargs)
        # Host pids of the processes the server launched for the capsule (the
        # host-side wrappers: nsenter, setsid, ...), added and removed by their
        # HostProcess.
        self.wrappers: set[int] = set()
        self.freezer = Freezer(
            self.member_pids,
            self.cgroup if self.freeze_by_cgroup else None,
            lambda: list(self.wrappers),
        )

    async def _ready_layer(self, prepare: Callable[[], Awaitable[None]] | None) -> None:
        """Run ``prepare``, then make the writable skeleton the host processes see."""
        if prepare is not None:
            await prepare()
        await asyncio.to_thread(ensure_rw_skeleton, self.rw_dir, self.ids.owner)

    @abc.abstractmethod
    def launch(
        self, argv: list[str], env: dict[str, str], cwd: str, *, tty: bool, want_pid: bool
    ) -> Launch:
        """How ``start_process`` runs a command on the host (the backend's own:
        code outside ``_runtime`` starts processes only through ``start_process``).
        ``want_pid``: the caller needs the pid the capsule sees, even for a command
        that exits at once (background, streams, PTY)."""

    @abc.abstractmethod
    def visible_pid(self, host_pid: int) -> int:
        """The pid the capsule sees for the host process ``host_pid``."""

    @abc.abstractmethod
    def member_pids(self) -> list[int]:
        """Host pids of the capsule's own processes (pause, kill and usage act on them)."""

    def start_process(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        *,
        want_pid: bool = True,
    ) -> CapsuleProcess:
        """A host process run from ``launch()`` (see ``Sandbox.start_process``)."""
        return HostProcess(self, argv, env, cwd, want_pid=want_pid)

    def open_terminal(
        self, argv: list[str], env: dict[str, str], cwd: str, cols: int, rows: int
    ) -> CapsuleTerminal:
        """A host process on a pty from ``open_pty`` (see ``Sandbox.open_terminal``)."""
        return HostTerminal(self, argv, env, cwd, cols, rows)

    def on_spawn(self, host_pid: int) -> None:
        """Called (by its ``HostProcess``) for every process launched for this capsule."""
        self.wrappers.add(host_pid)

    def on_exit(self, host_pid: int) -> None:
        """Called once a launched process has been reaped."""
        self.wrappers.discard(host_pid)

    def kill_now(self) -> None:
        """SIGKILL every process of the capsule, synchronously (last resort at shutdown)."""
        if self.cgroup is not None:
            self.cgroup.kill()
        for pid in [*self.member_pids(), *self.wrappers]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    async def usage(self) -> Usage:
        """CPU seconds and RSS of every capsule process, and its writable layer's size."""
        pids = self.member_pids()
        return await asyncio.to_thread(_measure, pids, str(self.rw_dir))

    def open_pty(self) -> tuple[int, int]:
        """A pty pair (master, slave) for a terminal: a host one here; a backend
        with its own devpts overrides it (and bounds it by ``pty_max``)."""
        return os.openpty()

    async def freeze(self) -> None:
        self.freezer.freeze()

    async def thaw(self) -> None:
        self.freezer.thaw()

    @property
    def is_frozen(self) -> bool:
        return self.freezer.frozen
