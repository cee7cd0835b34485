"""Long-running processes in a microVM, through its agent, many at once.

``GuestProcesses.start(argv, ...)`` asks the guest agent to start a process and
returns a ``GuestProcess``: ``read(timeout)`` gives the next output chunk (the
stream's name and its bytes) or None once the process has exited and all its
output was read; ``write_stdin``, ``close_stdin``, ``signal``, ``resize`` (a
pty) and ``wait(timeout)`` (the exit code, negative for a signal).  All of it is
thread-safe and every call is bounded in time.

The guest sends output as events on the one multiplexed channel, which the
channel's reader thread hands to ``GuestProcesses.event`` (it must never block).

Flow control, per process, in cost units: an output event costs its byte count
plus ``CHUNK_COST`` (so a flood of one-byte chunks is bounded too).  The guest
may have at most ``CREDIT_WINDOW`` of cost unacknowledged; the host queues what
arrives and acknowledges (``{"op": "ack", "proc": P, "bytes": cost}``, a
notification) only what ``read()`` has taken, in batches of a quarter window or
when its queue runs empty.  So a host that does not read stops the guest's pump,
whose process then blocks on its full pipe (as on any OS: ``wait()`` on a
process whose output is not read may time out); and a guest that ignores its
credit (or sends a chunk over ``MAX_CHUNK_BYTES``) cannot make the host hold
more than one window per process: the host counts the cost itself and fails
that process with an ``AgentError`` (its queue dropped, further events for it
dropped).  Events for a process id the host does not know (never started,
closed, or a hostile guest) are dropped on arrival.
"""

from __future__ import annotations

import base64
import collections
import threading
import time
from dataclasses import dataclass
from typing import Any

from ._agent import EXIT_CODE_RANGE, AgentChannel, AgentError, decode_base64, field

MAX_PROCESSES = 64  # the guest refuses more at once; the host tracks no more either
MAX_CHUNK_BYTES = 64 * 1024  # output bytes in one event
CREDIT_WINDOW = 512 * 1024  # unacknowledged output cost per process
CHUNK_COST = 256  # per event, on top of its bytes (the guest agent counts the same)
STDIN_CHUNK_BYTES = 1024 * 1024  # per stdin request
STREAMS = frozenset({"stdout", "stderr", "pty"})
_MAX_TERMINAL = 10_000  # rows or columns


@dataclass(frozen=True)
class OutputChunk:
    stream: str  # stdout, stderr, or pty (a terminal merges both)
    data: bytes


class GuestProcess:
    def __init__(self, processes: GuestProcesses, proc_id: int, guest_pid: int) -> None:
        self._processes = processes
        self._channel = processes.channel
        self.id = proc_id
        self.guest_pid = guest_pid
        self._changed = threading.Condition()
        self._queue: collections.deque[OutputChunk] = collections.deque()
        self._in_flight = 0  # cost received and not yet acknowledged
        self._to_ack = 0  # cost read by the consumer, not yet acknowledged
        self._exit_code: int | None = None
        self._error: str | None = None

    # -- the reader thread's side (never blocks) ----------------------------------

    def _output(self, frame: dict[str, Any]) -> None:
        try:
            stream = field(frame, "stream", str, "output")
            if stream not in STREAMS:
                raise AgentError(f"agent output: unknown stream {stream[:40]!r}")
            data, longer = decode_base64(
                field(frame, "data", str, "output"), MAX_CHUNK_BYTES, "output"
            )
            if longer:
                raise AgentError(f"agent output: a chunk over {MAX_CHUNK_BYTES} bytes")
        except AgentError as exc:
            return self._fail(str(exc))
        with self._changed:
            if self._error is not None or self._exit_code is not None:
                return None
            self._in_flight += len(data) + CHUNK_COST
            if self._in_flight > CREDIT_WINDOW:
                self._queue.clear()
                self._error = f"agent output: process {self.id} sent past its credit"
            elif data:
                self._queue.append(OutputChunk(stream, data))
            self._changed.notify_all()
        return None

    def _exited(self, frame: dict[str, Any]) -> None:
        exit_code = frame.get("exit_code")
        if not isinstance(exit_code, int) or exit_code not in EXIT_CODE_RANGE:
            return self._fail("agent exit: bad exit code")
        with self._changed:
            if self._exit_code is None and self._error is None:
                self._exit_code = exit_code
            self._changed.notify_all()
        return None

    def _fail(self, reason: str) -> None:
        with self._changed:
            if self._error is None:
                self._error = reason
                self._queue.clear()
            self._changed.notify_all()

    # -- the consumer's side ------------------------------------------------------

    def read(self, timeout: float) -> OutputChunk | None:
        """The next output chunk, or None once the process exited and all was read.

        TimeoutError if nothing came within ``timeout``; AgentError if the
        channel broke or the guest broke the protocol for this process.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self._queue:
                if self._error is not None:
                    raise AgentError(self._error)
                if self._exit_code is not None:
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"process {self.id}: no output within {timeout} s")
                self._changed.wait(remaining)
            chunk = self._queue.popleft()
            cost = len(chunk.data) + CHUNK_COST
            self._in_flight -= cost
            self._to_ack += cost
            ack = 0
            if self._to_ack >= CREDIT_WINDOW // 4 or not self._queue:
                ack, self._to_ack = self._to_ack, 0
        if ack and self._exit_code is None:
            try:
                self._channel.notify(
                    {"op": "ack", "proc": self.id, "bytes": ack}, self._processes.timeout
                )
            except AgentError:
                pass  # the channel broke: the next read says so; this chunk is still good
        return chunk

    def wait(self, timeout: float) -> int:
        """The exit code (negative: the signal); TimeoutError if still running.

        The guest reports the exit after the last output, so output that is not
        read (by another thread) can hold the report back.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._exit_code is None:
                if self._error is not None:
                    raise AgentError(self._error)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"process {self.id}: still running after {timeout} s")
                self._changed.wait(remaining)
            return self._exit_code

    @property
    def exit_code(self) -> int | None:
        return self._exit_code

    @property
    def error(self) -> str | None:
        """Why the process failed here (a broken channel, a protocol error, closed), or None."""
        return self._error

    def write_stdin(self, data: bytes) -> None:
        view = memoryview(data)
        for start in range(0, len(view), STDIN_CHUNK_BYTES):
            part = base64.b64encode(view[start : start + STDIN_CHUNK_BYTES]).decode()
            self._call("stdin", data=part)

    def close_stdin(self) -> None:
        """Close its stdin (a pty gets ^D, a terminal's end of input)."""
        self._call("close_stdin")

    def signal(self, signal: int) -> None:
        """Send ``signal`` to its process group."""
        if not 0 < signal < 65:
            raise ValueError(f"not a signal number: {signal}")
        self._call("signal", signal=signal)

    def resize(self, rows: int, cols: int) -> None:
        if not (0 < rows <= _MAX_TERMINAL and 0 < cols <= _MAX_TERMINAL):
            raise ValueError(f"not a terminal size: {rows}x{cols}")
        self._call("resize", rows=rows, cols=cols)

    def close(self) -> None:
        """Forget the process here; the guest keeps it running and drops its output."""
        self._processes.forget(self.id)
        if self._exit_code is None and self._error is None and not self._channel.broken:
            try:
                self._call("detach")
            except AgentError:
                pass  # it exited meanwhile
        self._fail(f"process {self.id}: closed")

    def _call(self, op: str, **fields: Any) -> dict[str, Any]:
        return self._channel.request({"op": op, "proc": self.id, **fields}, self._processes.timeout)


class GuestProcesses:
    """The processes of one agent channel; receives its events."""

    def __init__(self, channel: AgentChannel, timeout: float = 30.0) -> None:
        self.channel = channel
        self.timeout = timeout  # per request
        self._lock = threading.Lock()
        self._running: dict[int, GuestProcess] = {}
        self.dropped_events = 0  # events for ids not known here
        channel.set_event_sink(self)

    def start(
        self,
        argv: list[str],
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        *,
        pty: bool = False,
        rows: int = 24,
        cols: int = 80,
    ) -> GuestProcess:
        if not argv or not all(isinstance(arg, str) and "\0" not in arg for arg in argv):
            raise ValueError("argv must be non-empty strings without NUL")
        with self._lock:
            if len(self._running) >= MAX_PROCESSES:
                raise AgentError(f"agent start: at most {MAX_PROCESSES} processes at once")
        started: list[GuestProcess] = []

        def register(answer: dict[str, Any]) -> None:
            # In the reader thread, before the process's first event is read.
            process = GuestProcess(
                self, field(answer, "proc", int, "start"), field(answer, "pid", int, "start")
            )
            with self._lock:
                self._running[process.id] = process
            started.append(process)

        message = {
            "op": "start",
            "argv": argv,
            "env": env or {},
            "cwd": cwd,
            "pty": pty,
            "rows": rows,
            "cols": cols,
            "window": CREDIT_WINDOW,
            "chunk": MAX_CHUNK_BYTES,
        }
        self.channel.request(message, self.timeout, on_answer=register)
        return started[0]

    def forget(self, proc_id: int) -> None:
        with self._lock:
            self._running.pop(proc_id, None)

    # -- the channel's event sink (the reader thread) -------------------------------

    def event(self, frame: dict[str, Any]) -> None:
        proc_id = frame.get("proc")
        with self._lock:
            process = self._running.get(proc_id) if isinstance(proc_id, int) else None
            if process is not None and frame.get("event") == "exit":
                del self._running[process.id]
        if process is None:
            self.dropped_events += 1
            return
        kind = frame.get("event")
        if kind == "output":
            process._output(frame)
        elif kind == "exit":
            process._exited(frame)
        else:
            self.dropped_events += 1

    def broken(self, reason: str) -> None:
        with self._lock:
            processes = list(self._running.values())
            self._running.clear()
        for process in processes:
            process._fail(f"agent channel broken: {reason}")
