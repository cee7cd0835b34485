"""No-isolation fallback: plain subprocesses in a per-capsule directory.

Used when bubblewrap or user namespaces are unavailable, or on request.  The
process sees the host's whole filesystem, network and process table; only HOME,
TMPDIR and the working directory point into the capsule's directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from . import _procfs
from ._base import DEFAULT_PATH, WRITABLE_DIRS
from ._cgroup import CapsuleCgroup, Limits
from ._contract import Capabilities, Launch, Probe
from ._host import HostSandbox
from ._ids import SERVER_IDS, Ids


class PlainSandbox(HostSandbox):
    kind = "none"
    CAPABILITIES = Capabilities(
        isolated=False,
        host_filesystem=True,
        memory_snapshots=False,
        limits=False,
        # Popen itself raises for a missing program or cwd.
        precheck_exec=False,
    )

    @classmethod
    def probe(cls) -> Probe:
        return Probe(None, "plain subprocesses WITHOUT isolation")

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
        # Host paths are visible as they are: ro_binds need no mount here.
        super().__init__(
            capsule_id,
            capsule_dir,
            cgroup,
            ro_binds,
            limits,
            freeze_by_cgroup=freeze_by_cgroup,
            ids=ids,
        )
        self._alive = False
        # Every session ever started for the capsule: a background child that
        # outlives its session leader still belongs to the capsule.
        self._sessions: set[int] = set()

    def on_spawn(self, host_pid: int) -> None:
        super().on_spawn(host_pid)
        self._sessions.add(host_pid)

    async def _boot(self, prepare: Callable[[], Awaitable[None]] | None) -> None:
        await self._ready_layer(prepare)
        # No isolation here, but the cgroup limits still hold.
        self.make_cgroup()
        self._alive = True

    def host_path(self, capsule_path: str) -> str:
        """Map /root, /tmp, /home, /workspace into the capsule dir; other paths stay host paths."""
        parts = [p for p in capsule_path.split("/") if p]
        if parts and parts[0] in WRITABLE_DIRS:
            return str(self.rw_dir.joinpath(*parts))
        return capsule_path

    def home_env(self) -> dict[str, str]:
        # From the passwd database, not the server's environment.
        try:
            user = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            user = str(os.getuid())
        return {
            "PATH": DEFAULT_PATH,
            "HOME": str(self.rw_dir / "root"),
            "USER": user,
            "LOGNAME": user,
            "TMPDIR": str(self.rw_dir / "tmp"),
        }

    def run_dir_for_processes(self) -> str:
        return str(self.run_dir)

    def launch(
        self, argv: list[str], env: dict[str, str], cwd: str, *, tty: bool, want_pid: bool
    ) -> Launch:
        # The Popen pid is the process itself: nothing to report.
        prefix = ["setsid", "-c", "--"] if tty else []
        # The request env is the process env: without isolation there is no
        # host side to keep it from.
        return Launch(
            argv=self.in_cgroup(prefix + argv),
            env=env,
            cwd=self.host_path(cwd),
            new_session=not tty,
            nested=False,
        )

    def visible_pid(self, host_pid: int) -> int:
        return host_pid

    def open_root(self) -> int:
        return os.open(self.rw_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def member_pids(self) -> list[int]:
        if self.cgroup is not None:
            return self.cgroup.pids()
        # Every launched command leads its own session; its descendants share it.
        members = _procfs.session_members(self._sessions)
        alive = {_procfs.session_of(pid) for pid in members}
        # Forget sessions with no process left, so a recycled pid is never adopted.
        self._sessions &= alive | self.wrappers
        return members

    def reap_orphans(self) -> int:
        me = os.getpid()
        reaped = 0
        for pid in _procfs.session_members(self._sessions):
            # Our own Popen children (pid == sid) are reaped by their HostProcess.
            if (
                pid not in self.wrappers
                and _procfs.ppid_of(pid) == me
                and _procfs.state_of(pid) == "Z"
            ):
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, os.WNOHANG)
                    reaped += 1
        return reaped

    @property
    def alive(self) -> bool:
        return self._alive

    async def destroy(self) -> None:
        for pid in self.member_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                os.kill(pid, signal.SIGCONT)
        self._alive = False
        # Killed orphans become zombies of ours; give them a moment, then reap.
        for _ in range(20):
            await asyncio.sleep(0.01)
            self.reap_orphans()
            if not [p for p in _procfs.session_members(self._sessions) if p not in self.wrappers]:
                break
        await self.release_cgroup()
