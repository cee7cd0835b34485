"""A capsule process that is a host process (the bubblewrap and plain backends).

``HostSandbox.start_process`` builds one from the backend's ``launch()`` argv.  No
asyncio subprocess transport is used: the server is a child subreaper and reaps
specific pids itself, and a pidfd on the loop tells us when a process exits
without a watcher thread per child.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from typing import TYPE_CHECKING, Any

from . import _procfs
from ._process import CapsuleProcess, Listener, add_listener

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._host import HostSandbox

# Output after the wrapper exits is drained for at most this long: a background
# daemon that inherited the pipe would otherwise keep the stream open forever.
EOF_GRACE = 0.2


class HostProcess(CapsuleProcess):
    def __init__(
        self,
        sandbox: HostSandbox,
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        *,
        tty_slave: int | None = None,
        want_pid: bool = True,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._sandbox = sandbox
        launch = sandbox.launch(argv, env, cwd, tty=tty_slave is not None, want_pid=want_pid)
        self._nested = launch.nested
        self._listeners: list[Listener] = []
        self.exit_code: int | None = None
        self.death_signal: int | None = None
        self.exited = asyncio.Event()
        self._target: int | None = None
        self._visible: int | None = None
        self._open_pipes: set[int] = set()
        self._pipe_kind: dict[int, str] = {}
        self._pipe_stream: dict[int, Any] = {}
        # With a tty the slave is the process's stdin, stdout and stderr.
        stdin: int = tty_slave if tty_slave is not None else subprocess.DEVNULL
        out = tty_slave if tty_slave is not None else subprocess.PIPE
        self._pid_sock: socket.socket | None = None
        child_sock = None
        if launch.reports_pid:
            self._pid_sock, child_sock = socket.socketpair()
            stdin = child_sock.fileno()
        try:
            self._popen = subprocess.Popen(
                launch.argv,
                env=launch.env,
                cwd=launch.cwd,
                start_new_session=launch.new_session,
                close_fds=True,
                pass_fds=launch.pass_fds,
                stdin=stdin,
                stdout=out,
                stderr=out,
            )
        except BaseException:
            if self._pid_sock is not None:
                self._pid_sock.close()
            raise
        finally:
            if child_sock is not None:
                child_sock.close()
        self.host_pid = self._popen.pid
        sandbox.on_spawn(self.host_pid)
        if tty_slave is None:
            assert self._popen.stdout is not None and self._popen.stderr is not None
            for kind, stream in (("stdout", self._popen.stdout), ("stderr", self._popen.stderr)):
                fd = stream.fileno()
                os.set_blocking(fd, False)
                self._open_pipes.add(fd)
                self._pipe_kind[fd] = kind
                self._pipe_stream[fd] = stream
                self._loop.add_reader(fd, self._on_output, kind, fd)
        self._pidfd = os.pidfd_open(self.host_pid)
        self._loop.add_reader(self._pidfd, self._on_exit)
        self._grace: asyncio.TimerHandle | None = None
        self._holds = 0

    # flow control ---------------------------------------------------------------
    def hold_output(self) -> None:
        """Stop reading the output pipes until every hold is released (backpressure:
        the process then blocks when the pipe buffer is full)."""
        self._holds += 1
        if self._holds == 1:
            for fd in self._open_pipes:
                self._loop.remove_reader(fd)

    def release_output(self) -> None:
        if self._holds == 0:
            return
        self._holds -= 1
        if self._holds == 0:
            for fd in self._open_pipes:
                self._loop.add_reader(fd, self._on_output, self._pipe_kind[fd], fd)

    # output -------------------------------------------------------------------
    def listen(self, listener: Listener) -> Callable[[], None]:
        """Get ("stdout"|"stderr", bytes) and finally ("exit", b"") calls."""
        return add_listener(self._listeners, listener)

    def _emit(self, kind: str, data: bytes) -> None:
        for listener in list(self._listeners):
            listener(kind, data)

    def _on_output(self, kind: str, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._emit(kind, data)
            return
        self._close_pipe(fd)
        self._maybe_finish()

    def _close_pipe(self, fd: int) -> None:
        if fd in self._open_pipes:
            self._loop.remove_reader(fd)  # a no-op while output is held
            self._open_pipes.discard(fd)
            self._pipe_stream.pop(fd).close()

    # exit ---------------------------------------------------------------------
    def _on_exit(self) -> None:
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        rc = self._popen.wait()
        self._sandbox.on_exit(self.host_pid)
        # A signal death is reported like envd does for a missing exit status; the
        # signal is kept for the server's own messages.
        self._rc = rc if rc >= 0 else -1
        self.death_signal = -rc if rc < 0 else None
        if self._open_pipes:
            self._grace = self._loop.call_later(EOF_GRACE, self._force_finish)
        self._maybe_finish()

    def _force_finish(self) -> None:
        for fd in list(self._open_pipes):
            # Drain what is already buffered (bounded: a daemon may keep writing).
            with contextlib.suppress(OSError):
                for _ in range(16):
                    data = os.read(fd, 65536)
                    if not data:
                        break
                    self._emit(self._pipe_kind[fd], data)
            self._close_pipe(fd)
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.exited.is_set() or self._popen.returncode is None or self._open_pipes:
            return
        if self._pid_sock is not None:
            self._pid_sock.close()
            self._pid_sock = None
        if self._grace is not None:
            self._grace.cancel()
        self.exit_code = self._rc
        self.exited.set()
        self._emit("exit", b"")

    # identity and signals -----------------------------------------------------
    async def resolve(self, timeout: float = 2.0) -> int:
        _, visible = await self._resolve_host(timeout)
        return visible

    async def _resolve_host(self, timeout: float = 2.0) -> tuple[int | None, int]:
        """(host pid of the real process or None once gone, pid seen inside the capsule)."""
        if self._visible is None:
            reported = await self._read_reported_pid(timeout)
            if not self._nested:
                self._target = self.host_pid
            else:
                self._target = await self._find_child(timeout)
            if reported is not None:
                self._visible = reported
            elif self._target is not None:
                self._visible = self._sandbox.visible_pid(self._target)
            else:
                self._visible = self.host_pid  # never started: nothing better to report
        return self._target, self._visible

    async def _read_reported_pid(self, timeout: float) -> int | None:
        sock = self._pid_sock
        if sock is None:
            return None
        self._pid_sock = None
        sock.setblocking(False)

        async def read_line() -> bytes:
            buf = b""
            while b"\n" not in buf:
                chunk = await self._loop.sock_recv(sock, 64)
                if not chunk:
                    break
                buf += chunk
            return buf

        try:
            buf = await asyncio.wait_for(read_line(), timeout)
        except (asyncio.TimeoutError, OSError):
            return None
        finally:
            sock.close()
        line = buf.split(b"\n", 1)[0].strip()
        return int(line) if line.isdigit() else None

    async def _find_child(self, timeout: float) -> int | None:
        # The child of nsenter is the real process; it is gone once nsenter exits.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._popen.returncode is not None or self.exited.is_set():
                return None
            child = _procfs.find_child(self.host_pid)
            if child is not None:
                return child
            await asyncio.sleep(0.001)
        return None

    def _reaped(self) -> bool:
        """Whether the wrapper has been reaped: from then on its pid, and the pid of the
        command it ran, may belong to another process of the host (pid numbers are
        reused, and fast on a host with a small ``pid_max``), so nothing is sent to them."""
        return self.exited.is_set() or self._popen.returncode is not None

    async def send_signal(self, sig: int) -> None:
        if self._reaped():
            return
        target, _ = await self._resolve_host()
        if target is None or self._reaped():  # resolving yields to the loop, which may reap
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            try:
                # The command leads its own process group: signal everything it started.
                os.killpg(target, sig)
            except ProcessLookupError:
                os.kill(target, sig)
            if sig == signal.SIGKILL:
                # A stopped wrapper (SIGSTOP pause) must run to reap its child.
                os.kill(self.host_pid, signal.SIGCONT)

    def kill_now(self) -> None:
        """Synchronous last resort used at shutdown."""
        if self._reaped():
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.host_pid, signal.SIGKILL)
