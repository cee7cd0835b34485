"""The host end of the guest agent's virtio-serial port (a unix socket QEMU serves).

The port is one byte stream carrying JSON lines, multiplexed: the host may have
many requests (``{"id": N, "op": ...}``) and notifications (no id, no answer) in
flight, and the guest sends answers (``{"id": N, "ok": ...}``) in any order plus
unsolicited events (``{"event": ..., "proc": P, ...}``: process output and
exit, see ``_guest_processes``).  One reader thread per channel reads the
frames and dispatches them: an answer wakes the request waiting on its id (each
waits with its own deadline), an event goes to the channel's event sink.  Frames
are sent whole under a send lock.  A broken channel (EOF, a frame over the cap, a
send cut short, a frame that cannot be routed) fails every waiter at once.

QEMU drops whatever is written to the port before the guest agent has opened it
(MICROVM-NOTES), so ``handshake()`` repeats a ping until one is answered.  Until
then, lines that cannot be routed are skipped (the tail of a line the agent was
writing when a snapshot was taken can come first after a restore); afterwards
they break the channel.  An answer to a request that timed out is skipped.

The guest runs untrusted code, so everything read from it is hostile input: one
frame is capped, every wait has a total deadline (a guest dripping one byte at a
time cannot stretch it), and answers are checked for shape before use, so a bad
answer is an ``AgentError``, never a ``TypeError`` or ``KeyError`` in the server.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

# One line from the agent, newline excluded.  It must hold an exec answer at the
# output cap (two base64 streams, 4/3 each) or a file chunk, plus the JSON around.
MAX_FRAME_BYTES = 4 * 1024 * 1024
# stdout and stderr of one exec are each cut to this many bytes (``truncated``);
# the guest agent cuts them itself, and the host cuts again whatever it is sent.
MAX_EXEC_OUTPUT = 1024 * 1024
_RECV_BYTES = 1 << 16
# How often the reader looks up from a silent socket to see whether it was closed.
_READER_POLL_SECONDS = 0.5
# An exit code is 0..255, or minus the signal that killed the command.
EXIT_CODE_RANGE = range(-255, 256)


class AgentError(RuntimeError):
    """A failed request; ``errno`` when the guest says an OSError caused it."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class EventSink(Protocol):
    """Where the reader thread hands events; neither call may block."""

    def event(self, frame: dict[str, Any]) -> None: ...

    def broken(self, reason: str) -> None: ...


@dataclass(frozen=True)
class ExecResult:
    exit_code: int  # negative: killed by that signal
    stdout: bytes
    stderr: bytes
    timed_out: bool = False
    truncated: bool = False  # stdout or stderr was cut at MAX_EXEC_OUTPUT


def field(answer: dict[str, Any], name: str, kind: type, what: str) -> Any:
    """``answer[name]`` if it is a ``kind`` (bool is not an int here), else AgentError."""
    value = answer.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise AgentError(f"agent {what}: bad answer, {name!r} is not a {kind.__name__}")
    return value


def decode_base64(text: str, limit: int, what: str) -> tuple[bytes, bool]:
    """Decode at most ``limit`` bytes of ``text``; (data, whether more was sent).

    Only the prefix that can hold ``limit`` bytes is decoded, so a long string
    costs no more than a short one, and the decoded length is checked again.
    """
    prefix = text[: (limit + 2) // 3 * 4]
    try:
        data = base64.b64decode(prefix, validate=True)
    except (binascii.Error, ValueError):
        raise AgentError(f"agent {what}: bad answer, invalid base64") from None
    return data[:limit], len(prefix) < len(text) or len(data) > limit


def _output(answer: dict[str, Any], name: str) -> tuple[bytes, bool]:
    return decode_base64(field(answer, name, str, "exec"), MAX_EXEC_OUTPUT, "exec")


class _Waiter:
    """One request in flight: woken by its answer or by the channel breaking."""

    def __init__(self, on_answer: Callable[[dict[str, Any]], None] | None) -> None:
        self.done = threading.Event()
        self.answer: dict[str, Any] | None = None
        self.error: str | None = None
        self.on_answer = on_answer


class AgentChannel:
    def __init__(self, sock: socket.socket, *, synced: bool = True) -> None:
        self._sock = sock
        # Timeout mode, so the reader looks up now and then; sends poll on their own.
        sock.settimeout(_READER_POLL_SECONDS)
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer already known to hold no newline
        self._next_id = 1
        self._state = threading.Lock()  # ids, waiters, broken
        self._send_lock = threading.Lock()
        self._waiters: dict[int, _Waiter] = {}
        self._broken: str | None = None
        self._synced = synced  # False: skip lines that cannot be routed (before a pong)
        self._sink: EventSink | None = None
        self._reader = threading.Thread(target=self._read_loop, name="wrenn-agent", daemon=True)
        self._reader.start()

    @classmethod
    def connect(cls, path: Path, timeout: float) -> AgentChannel:
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(path))
                return cls(sock, synced=False)
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if time.monotonic() >= deadline:
                    raise AgentError(
                        f"agent socket {path} did not appear within {timeout} s"
                    ) from None
                time.sleep(0.01)

    @property
    def broken(self) -> str | None:
        """Why the channel can no longer be used, or None."""
        return self._broken

    def set_event_sink(self, sink: EventSink) -> None:
        self._sink = sink

    # -- requests ---------------------------------------------------------------

    def handshake(self, timeout: float, interval: float = 0.2) -> dict[str, Any]:
        """Ping every ``interval`` until the agent answers any of the pings; the answer
        (its pid and clock).  A slow guest's late pong to an earlier ping counts."""
        deadline = time.monotonic() + timeout
        self._synced = False
        ponged = threading.Event()
        pongs: list[dict[str, Any]] = []

        def pong(answer: dict[str, Any]) -> None:
            pongs.append(answer)
            ponged.set()

        sent: list[int] = []
        try:
            while time.monotonic() < deadline:
                sent.append(self._submit({"op": "ping"}, deadline, _Waiter(pong)))
                if ponged.wait(max(0.0, min(interval, deadline - time.monotonic()))):
                    self._synced = True
                    return pongs[0]
        finally:
            self._forget(sent)
        raise AgentError(f"the guest agent did not answer a ping within {timeout} s")

    def request(
        self,
        message: dict[str, Any],
        timeout: float,
        on_answer: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Send one request and wait for its answer until ``timeout``.

        ``on_answer`` runs in the reader thread before any later frame is read
        (so a started process is known before its first event); it must not block.
        """
        op = str(message.get("op"))
        deadline = time.monotonic() + timeout
        waiter = _Waiter(on_answer)
        request_id = self._submit(message, deadline, waiter)
        if not waiter.done.wait(max(0.0, deadline - time.monotonic())):
            with self._state:
                claimed = self._waiters.pop(request_id, None) is None
            # Claimed: the reader took the answer at the deadline and is handing it
            # over (``on_answer`` does not block), so it is not lost half-applied.
            if not (claimed and waiter.done.wait(1.0)):
                raise AgentError(f"agent {op}: no answer within {timeout} s")
        if waiter.error is not None:
            raise AgentError(waiter.error)
        answer = waiter.answer
        assert answer is not None
        if answer.get("ok") is not True:
            code = answer.get("errno")
            # Only a plausible errno is believed (Linux's are below 4096); else none.
            if not isinstance(code, int) or isinstance(code, bool) or not 0 < code < 4096:
                code = None
            raise AgentError(f"agent {op}: {str(answer.get('error'))[:1000]}", code)
        return answer

    def _submit(self, message: dict[str, Any], deadline: float, waiter: _Waiter) -> int:
        """Register ``waiter`` under a new id and send the request; the id."""
        with self._state:
            if self._broken:
                raise AgentError(f"agent channel broken: {self._broken}")
            request_id = self._next_id
            self._next_id += 1
            self._waiters[request_id] = waiter
        try:
            self._send({"id": request_id, **message}, deadline, str(message.get("op")))
        except BaseException:
            self._forget([request_id])
            raise
        return request_id

    def _forget(self, request_ids: list[int]) -> None:
        with self._state:
            for request_id in request_ids:
                self._waiters.pop(request_id, None)

    def notify(self, message: dict[str, Any], timeout: float) -> None:
        """Send a message the agent does not answer (an output acknowledgement)."""
        if self._broken:
            raise AgentError(f"agent channel broken: {self._broken}")
        self._send(message, time.monotonic() + timeout, str(message.get("op")))

    def exec(
        self,
        argv: list[str],
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        timeout: float = 30.0,
    ) -> ExecResult:
        message = {
            "op": "exec",
            "argv": argv,
            "env": env or {},
            "cwd": cwd,
            "timeout": timeout,
            "max_output": MAX_EXEC_OUTPUT,
        }
        # The guest kills the command at ``timeout``; the margin covers that kill
        # and the trip back through a slow (emulated) guest.
        answer = self.request(message, timeout + 10.0)
        exit_code = field(answer, "exit_code", int, "exec")
        if exit_code not in EXIT_CODE_RANGE:
            raise AgentError(
                f"agent exec: bad answer, exit code {str(exit_code)[:40]} out of range"
            )
        stdout, stdout_cut = _output(answer, "stdout")
        stderr, stderr_cut = _output(answer, "stderr")
        return ExecResult(
            exit_code=exit_code,
            stdout=stdout,
            stderr=stderr,
            timed_out=answer.get("timed_out") is True,
            truncated=stdout_cut or stderr_cut or answer.get("truncated") is True,
        )

    def set_clock(self, unix_ns: int | None = None, timeout: float = 5.0) -> None:
        self.request({"op": "set_clock", "unix_ns": unix_ns or time.time_ns()}, timeout)

    def reseed(self, timeout: float = 5.0) -> None:
        """Give the guest's kernel generator 64 fresh bytes from the host and reseed it
        (a restored clone otherwise repeats its snapshot's random numbers)."""
        seed = base64.b64encode(os.urandom(64)).decode()
        self.request({"op": "reseed", "seed": seed}, timeout)

    def _send(self, message: dict[str, Any], deadline: float, op: str) -> None:
        data = memoryview(json.dumps(message).encode() + b"\n")
        if not self._send_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise AgentError(f"agent {op}: another send held the channel past the deadline")
        try:
            poller = select.poll()
            poller.register(self._sock.fileno(), select.POLLOUT)
            while data:
                if self._broken:
                    raise AgentError(f"agent channel broken: {self._broken}")
                # A guest that stops reading its port fills the socket: wait for room
                # only until the deadline.
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not poller.poll(remaining * 1000):
                    raise TimeoutError("no room in the socket before the deadline")
                sent = self._sock.send(data)
                data = data[sent:]
        except OSError as exc:  # TimeoutError included: part of a line may be out
            reason = f"agent {op}: send failed ({exc!r})"
            self._break(reason)
            raise AgentError(reason) from None
        finally:
            self._send_lock.release()

    # -- the reader thread --------------------------------------------------------

    def _read_loop(self) -> None:
        try:
            while not self._broken:
                line = self._read_line()
                if line is not None:
                    self._dispatch(line)
        except AgentError as exc:
            self._break(str(exc))
        except Exception as exc:  # a bug here must still fail the waiters, not hang them
            self._break(f"agent reader failed: {exc!r}")
        finally:
            self._buffer.clear()

    def _read_line(self) -> bytes | None:
        """The next line, or None when the socket was silent for a while."""
        newline = self._buffer.find(b"\n", self._scanned)
        if newline >= 0:
            line = bytes(self._buffer[:newline])
            del self._buffer[: newline + 1]
            self._scanned = 0
            return line
        self._scanned = len(self._buffer)
        if len(self._buffer) > MAX_FRAME_BYTES:
            raise AgentError(f"agent: a line from the guest is over {MAX_FRAME_BYTES} bytes")
        try:
            chunk = self._sock.recv(_RECV_BYTES)
        except TimeoutError:
            return None
        except OSError as exc:
            raise AgentError(f"agent connection failed ({exc!r})") from None
        if not chunk:
            raise AgentError("agent connection closed by QEMU")
        self._buffer += chunk
        return None

    def _dispatch(self, line: bytes) -> None:
        try:
            frame = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: ``[[[[...`` nested deep
            frame = None
        if not isinstance(frame, dict):
            return self._unroutable("bad answer, not a JSON object")
        if "event" in frame:
            if self._sink is not None:
                self._sink.event(frame)
            return None
        answer_id = frame.get("id")
        if not isinstance(answer_id, int) or isinstance(answer_id, bool):
            return self._unroutable("bad answer, 'id' is not an int")
        with self._state:
            waiter = self._waiters.pop(answer_id, None)
            sent = 0 < answer_id < self._next_id
        if waiter is None:
            if sent:
                return None  # a stale answer (a late pong, or a request that timed out)
            return self._unroutable(f"answer to id {str(answer_id)[:40]}, never sent")
        if waiter.on_answer is not None and frame.get("ok") is True:
            try:
                waiter.on_answer(frame)
            except AgentError as exc:
                waiter.error = str(exc)
        waiter.answer = frame
        waiter.done.set()
        return None

    def _unroutable(self, what: str) -> None:
        if self._synced:
            raise AgentError(f"agent: {what}")

    def _break(self, reason: str) -> None:
        """Mark the channel broken (the stream is out of step) and fail every waiter."""
        with self._state:
            if self._broken:
                return
            self._broken = reason
            waiters = list(self._waiters.values())
            self._waiters.clear()
        self._buffer.clear()
        for waiter in waiters:
            waiter.error = reason
            waiter.done.set()
        if self._sink is not None:
            self._sink.broken(reason)

    def close(self) -> None:
        self._break("closed")
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._reader.join(timeout=2 * _READER_POLL_SECONDS)
        self._sock.close()
