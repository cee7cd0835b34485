"""The interface every isolation backend implements, plus shared helpers."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import fcntl
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from ._freeze import Freezer

# Directories a capsule may write; each is a per-capsule host directory.
WRITABLE_DIRS = ("root", "tmp", "home", "workspace")
# Where the server-owned directory ``<capsule dir>/run`` appears inside an isolated
# capsule.  The server puts files there that it must later trust (the code runner's
# kernel sockets): capsule code can add entries, but never swap the directory itself.
RUN_DIR_IN_CAPSULE = "/run/wrenn"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441


@dataclass
class Launch:
    """How to start one command for a capsule on the host."""

    argv: list[str]
    env: dict[str, str]
    cwd: str | None
    new_session: bool
    # True when argv[0] is a wrapper (nsenter) and the real process is its child.
    nested: bool
    # True when the process writes its own capsule-visible pid, then a newline, to
    # its stdin (a socket the caller provides) before exec'ing the command.
    reports_pid: bool = False
    # Descriptors the launched command must inherit (namespace and root fds).
    pass_fds: tuple[int, ...] = ()


class BootError(RuntimeError):
    pass


class Sandbox(abc.ABC):
    """One capsule's live isolation context."""

    kind: str

    def __init__(
        self,
        capsule_id: str,
        capsule_dir: Path,
        freezer_cgroup: Path | None,
        ro_binds: tuple[str, ...] = (),
    ) -> None:
        self.capsule_id = capsule_id
        self.dir = capsule_dir
        self.rw_dir = capsule_dir / "rw"
        self.run_dir = capsule_dir / "run"
        # Host directories shown read-only at the same path inside the capsule.
        self.ro_binds = ro_binds
        self.wrappers: set[int] = set()
        self.freezer = Freezer(self.member_pids, freezer_cgroup, lambda: list(self.wrappers))

    def kill_now(self) -> None:
        """SIGKILL every process of the capsule, synchronously (last resort at shutdown)."""
        for pid in [*self.member_pids(), *self.wrappers]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def on_spawn(self, host_pid: int) -> None:
        """Called for every process launched for this capsule."""
        self.wrappers.add(host_pid)

    def reap_orphans(self) -> int:
        """Reap capsule processes re-parented to the server (subreaper); returns how many.

        Nothing to do by default: inside a pid namespace the capsule's own init
        adopts and reaps orphans.
        """
        return 0

    @abc.abstractmethod
    async def boot(self) -> None: ...

    @abc.abstractmethod
    def launch(
        self, argv: list[str], env: dict[str, str], cwd: str, *, tty: bool, want_pid: bool
    ) -> Launch:
        """``want_pid``: the caller needs the pid the capsule sees, even for a
        command that exits at once (background, streams, PTY)."""

    @abc.abstractmethod
    def visible_pid(self, host_pid: int) -> int: ...

    @abc.abstractmethod
    def open_root(self) -> int:
        """A directory fd of ``/`` as the capsule sees it; the caller closes it."""

    @abc.abstractmethod
    def member_pids(self) -> list[int]: ...

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

    def open_pty(self) -> tuple[int, int]:
        return os.openpty()

    def freeze(self) -> None:
        self.freezer.freeze()

    def thaw(self) -> None:
        self.freezer.thaw()


def ensure_rw_skeleton(rw_dir: Path) -> None:
    for name in WRITABLE_DIRS:
        (rw_dir / name).mkdir(parents=True, exist_ok=True)
    (rw_dir.parent / "run").mkdir(exist_ok=True)
    os.chmod(rw_dir / "tmp", 0o1777)
    os.chmod(rw_dir / "root", 0o700)


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
