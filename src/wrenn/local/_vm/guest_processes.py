"""Long-running processes for the guest agent (``guest_agent.py``), in the guest.

Copied into the image next to the agent and imported by it; standard library
only, never imported by the host except in tests.  ``start`` returns a process
id; a pump thread per process sends its output as events,
``{"event": "output", "proc": P, "stream": "stdout"|"stderr"|"pty", "data": b64}``,
and after the last output ``{"event": "exit", "proc": P, "exit_code": N}``
(negative: the signal).

Flow control is a per-process credit: each output event costs
``len(data) + CHUNK_COST`` and the pump sends only while the unacknowledged cost
stays within the window; the host gives credit back for what it has consumed
with ``{"op": "ack", "proc": P, "bytes": N}`` (a line without an answer).
Without credit the pump stops reading, the pipe fills and the process blocks,
as with any pipe.  The host (``_guest_processes.py``) enforces the same window
and chunk cap on its side.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import pty
import selectors
import struct
import subprocess
import termios
import threading
from collections.abc import Callable
from typing import Any

MAX_PROCESSES = 64  # started with ``start`` and not yet reported exited
MAX_EVENT_CHUNK = 64 * 1024  # output bytes per event
CREDIT_WINDOW = 512 * 1024  # unacknowledged output cost per process
CHUNK_COST = 256  # added to each event's cost, so tiny chunks cannot pile up

Send = Callable[[dict[str, Any]], None]


class GuestProcess:
    def __init__(self, proc_id: int, request: dict[str, Any], base_env: dict[str, str]) -> None:
        self.id = proc_id
        self.window = min(int(request.get("window") or CREDIT_WINDOW), CREDIT_WINDOW)
        self.chunk = min(int(request.get("chunk") or MAX_EVENT_CHUNK), MAX_EVENT_CHUNK)
        self.credit = self.window
        self.credit_changed = threading.Condition()
        self.detached = False
        self.stdin_lock = threading.Lock()
        argv = [str(arg) for arg in request["argv"]]
        env = dict(base_env)
        env.update({str(k): str(v) for k, v in (request.get("env") or {}).items()})
        cwd = request.get("cwd") or "/root"
        self.master: int | None = None
        self.stdin: int | None
        if request.get("pty"):
            master, slave = pty.openpty()
            _set_size(master, int(request.get("rows") or 24), int(request.get("cols") or 80))
            env.setdefault("TERM", "xterm")
            try:
                self.popen = subprocess.Popen(
                    argv, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
                    start_new_session=True, preexec_fn=_take_terminal,
                )  # fmt: skip
            except BaseException:
                os.close(master)
                raise
            finally:
                os.close(slave)  # only the child holds it: its exit gives EOF (EIO)
            # Non-blocking, as a host pty's master is on the server: input the
            # terminal does not take (a raw-mode program that is not reading) is
            # dropped, not a write that blocks this request and the process's exit.
            os.set_blocking(master, False)
            self.master = self.stdin = master
            self.outputs = {master: "pty"}
        else:
            self.popen = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True,
            )  # fmt: skip
            assert self.popen.stdin and self.popen.stdout and self.popen.stderr
            self.stdin = os.dup(self.popen.stdin.fileno())
            self.popen.stdin.close()
            self.outputs = {
                os.dup(self.popen.stdout.fileno()): "stdout",
                os.dup(self.popen.stderr.fileno()): "stderr",
            }
            self.popen.stdout.close()
            self.popen.stderr.close()

    def acknowledge(self, cost: int) -> None:
        with self.credit_changed:
            self.credit = min(self.window, self.credit + max(0, cost))
            self.credit_changed.notify_all()

    def pump(self, send: Send) -> None:
        """Send the output while there is credit, then the exit status."""
        open_fds = dict(self.outputs)
        with selectors.DefaultSelector() as selector:
            for fd in open_fds:
                selector.register(fd, selectors.EVENT_READ)
            while open_fds:
                with self.credit_changed:
                    while self.credit <= CHUNK_COST and not self.detached:
                        self.credit_changed.wait(1.0)
                    room = (
                        self.chunk if self.detached else min(self.chunk, self.credit - CHUNK_COST)
                    )
                ready = selector.select(0.2)
                if not ready and self.popen.poll() is not None:
                    break  # exited and drained (a child it left behind may hold the pipe)
                for key, _ in ready:
                    try:
                        data = os.read(key.fd, room)
                    except BlockingIOError:  # a pty master is non-blocking
                        continue
                    except OSError:  # EIO: a pty whose other end is gone
                        data = b""
                    if not data:
                        selector.unregister(key.fd)
                        del open_fds[key.fd]
                        if key.fd != self.master:  # the master is stdin too: closed below
                            os.close(key.fd)
                        continue
                    if self.detached:
                        continue
                    with self.credit_changed:
                        self.credit -= len(data) + CHUNK_COST
                    send(
                        {
                            "event": "output",
                            "proc": self.id,
                            "stream": open_fds[key.fd],
                            "data": base64.b64encode(data).decode(),
                        }
                    )
                    break  # back to the credit check before the next read
            for fd in open_fds:
                if fd != self.master:
                    _close_quietly(fd)
        exit_code = self.popen.wait()
        with self.stdin_lock:  # no write or resize is using the fd while it closes
            if self.stdin is not None:
                _close_quietly(self.stdin)
            self.stdin = None
        with PROCESSES_LOCK:
            PROCESSES.pop(self.id, None)
        send({"event": "exit", "proc": self.id, "exit_code": exit_code})

    def write_stdin(self, data: bytes) -> None:
        with self.stdin_lock:
            if self.stdin is None:
                raise ValueError(f"process {self.id}: stdin is closed")
            view = memoryview(data)
            while view:
                try:
                    view = view[os.write(self.stdin, view) :]
                except BlockingIOError:
                    return  # a full terminal: the rest is dropped (see __init__)

    def close_stdin(self) -> None:
        with self.stdin_lock:
            if self.stdin is not None and self.master is not None:
                with contextlib.suppress(BlockingIOError):
                    os.write(self.stdin, b"\x04")  # a terminal has no EOF of its own: ^D
            elif self.stdin is not None:
                os.close(self.stdin)
                self.stdin = None

    def resize(self, rows: int, cols: int) -> None:
        with self.stdin_lock:
            if self.master is None or self.stdin is None:
                raise ValueError(f"process {self.id} has no terminal (now)")
            _set_size(self.stdin, rows, cols)


def _take_terminal() -> None:
    """In the child, after setsid: make its pty (fd 0) the controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


PROCESSES: dict[int, GuestProcess] = {}
PROCESSES_LOCK = threading.Lock()
_next_proc_id = [1]


def _process(request: dict[str, Any]) -> GuestProcess:
    with PROCESSES_LOCK:
        process = PROCESSES.get(int(request["proc"]))
    if process is None:
        raise ValueError(f"no running process {request['proc']!r}")
    return process


def start(
    request: dict[str, Any], send: Send, base_env: dict[str, str]
) -> tuple[dict[str, Any], Callable[[], None]]:
    """Start the process; (the answer, what starts its pump once it is sent)."""
    with PROCESSES_LOCK:
        if len(PROCESSES) >= MAX_PROCESSES:
            raise RuntimeError(f"too many processes: at most {MAX_PROCESSES} at once")
        proc_id = _next_proc_id[0]
        _next_proc_id[0] += 1
        process = GuestProcess(proc_id, request, base_env)
        PROCESSES[proc_id] = process
    pump = threading.Thread(target=process.pump, args=(send,), daemon=True)
    return {"proc": proc_id, "pid": process.popen.pid}, pump.start


def _stdin(request: dict[str, Any]) -> dict[str, Any]:
    _process(request).write_stdin(base64.b64decode(request["data"], validate=True))
    return {}


def _close_stdin(request: dict[str, Any]) -> dict[str, Any]:
    _process(request).close_stdin()
    return {}


def _signal(request: dict[str, Any]) -> dict[str, Any]:
    try:
        os.killpg(_process(request).popen.pid, int(request["signal"]))
    except ProcessLookupError:
        pass  # exited, its last output still on the way
    return {}


def _resize(request: dict[str, Any]) -> dict[str, Any]:
    _process(request).resize(int(request["rows"]), int(request["cols"]))
    return {}


def _detach(request: dict[str, Any]) -> dict[str, Any]:
    """The host forgets the process: its output is read and dropped from now on."""
    process = _process(request)
    with process.credit_changed:
        process.detached = True
        process.credit_changed.notify_all()
    return {}


def acknowledge(message: dict[str, Any]) -> None:
    """An ``ack`` line: credit back for a process (unknown ones are ignored)."""
    try:
        with PROCESSES_LOCK:
            process = PROCESSES.get(int(message["proc"]))
        if process is not None:
            process.acknowledge(int(message["bytes"]))
    except (ValueError, KeyError, TypeError):
        pass  # notifications are not answered


OPS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "stdin": _stdin,
    "close_stdin": _close_stdin,
    "signal": _signal,
    "resize": _resize,
    "detach": _detach,
}
