"""The host end of the guest agent's virtio-serial port (a unix socket QEMU serves).

QEMU drops whatever is written to the port before the guest agent has opened it
(MICROVM-NOTES), so ``handshake()`` repeats a ping until one is answered; only
then are real requests sent.  Answers are matched by id: a late pong from an
earlier ping, or the answer to a request that timed out, is skipped.  One
request at a time (a lock), every wait bounded.

The guest runs untrusted code, so everything read from it is hostile input: one
line (frame) is capped, every wait has a total deadline (a guest dripping one
byte at a time cannot stretch it), and answers are checked for shape before use,
so a bad answer is an ``AgentError``, never a ``TypeError`` or ``KeyError`` in
the server.  A frame over the cap, or a send that cannot finish, leaves the byte
stream out of step, so the channel is then broken for good.
"""

from __future__ import annotations

import base64
import binascii
import json
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# One line from the agent, newline excluded.  It must hold an exec answer at the
# output cap (two base64 streams, 4/3 each) or a file chunk, plus the JSON around.
MAX_FRAME_BYTES = 4 * 1024 * 1024
# stdout and stderr of one exec are each cut to this many bytes (``truncated``);
# the guest agent cuts them itself, and the host cuts again whatever it is sent.
MAX_EXEC_OUTPUT = 1024 * 1024
_RECV_BYTES = 1 << 16
# An exit code is 0..255, or minus the signal that killed the command.
_EXIT_CODE_RANGE = range(-255, 256)


class AgentError(RuntimeError):
    pass


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


class AgentChannel:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer already known to hold no newline
        self._next_id = 1
        self._lock = threading.Lock()
        self._broken: str | None = None

    @classmethod
    def connect(cls, path: Path, timeout: float) -> AgentChannel:
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(path))
                return cls(sock)
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

    def handshake(self, timeout: float, interval: float = 0.2) -> dict[str, Any]:
        """Ping until the agent answers; the answer (its pid and clock).

        Lines that are not JSON are skipped here: the tail of a line the agent was
        writing when a snapshot was taken can come first after a restore.
        """
        deadline = time.monotonic() + timeout
        with self._locked(deadline, "ping"):
            sent: set[int] = set()
            while time.monotonic() < deadline:
                sent.add(self._send({"op": "ping"}, deadline))
                wait_until = min(deadline, time.monotonic() + interval)
                try:
                    while True:
                        answer = self._read_message(wait_until, "ping", skip_invalid=True)
                        if answer is None or answer.get("ok") is not True:
                            continue
                        answer_id = answer.get("id")
                        if isinstance(answer_id, int) and answer_id in sent:
                            return answer
                except TimeoutError:
                    continue
        raise AgentError(f"the guest agent did not answer a ping within {timeout} s")

    def request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        op = str(message.get("op"))
        deadline = time.monotonic() + timeout
        with self._locked(deadline, op):
            request_id = self._send(message, deadline)
            while True:
                try:
                    answer = self._read_message(deadline, op)
                except TimeoutError:
                    raise AgentError(f"agent {op}: no answer within {timeout} s") from None
                assert answer is not None
                answer_id = answer.get("id")
                if not isinstance(answer_id, int) or isinstance(answer_id, bool):
                    raise AgentError(f"agent {op}: bad answer, 'id' is not an int")
                if not 0 < answer_id <= request_id:
                    raise AgentError(f"agent {op}: answer to id {str(answer_id)[:40]}, never sent")
                if answer_id != request_id:
                    continue  # a stale answer (a late pong, or a request that timed out)
                if answer.get("ok") is not True:
                    error = answer.get("error")
                    raise AgentError(f"agent {op}: {str(error)[:1000]}")
                return answer

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
        if exit_code not in _EXIT_CODE_RANGE:
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

    def _locked(self, deadline: float, op: str) -> _Held:
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise AgentError(f"agent {op}: another request held the channel past the deadline")
        return _Held(self._lock)

    def _fail(self, reason: str) -> AgentError:
        """Mark the channel broken (the stream is out of step) and say why."""
        self._broken = reason
        self._buffer.clear()
        return AgentError(reason)

    def _send(self, message: dict[str, Any], deadline: float) -> int:
        if self._broken:
            raise AgentError(f"agent channel broken: {self._broken}")
        request_id = self._next_id
        self._next_id += 1
        data = json.dumps({"id": request_id, **message}).encode() + b"\n"
        # A guest that stops reading its port fills the socket; sendall's timeout
        # is the total for all the data (Python >= 3.5).
        self._sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            self._sock.sendall(data)
        except OSError as exc:  # TimeoutError included: part of a line may be out
            raise self._fail(f"agent {message.get('op')}: send failed ({exc!r})") from None
        return request_id

    def _read_message(
        self, deadline: float, op: str, *, skip_invalid: bool = False
    ) -> dict[str, Any] | None:
        """The next line as a JSON object; TimeoutError at ``deadline``.

        ``skip_invalid``: None for a line that is not a JSON object, instead of
        an AgentError.
        """
        line = self._read_line(deadline, op)
        try:
            decoded = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: ``[[[[...`` nested deep
            decoded = None
        if isinstance(decoded, dict):
            return decoded
        if skip_invalid:
            return None
        raise AgentError(f"agent {op}: bad answer, not a JSON object")

    def _read_line(self, deadline: float, op: str) -> bytes:
        while True:
            if self._broken:
                raise AgentError(f"agent channel broken: {self._broken}")
            newline = self._buffer.find(b"\n", self._scanned)
            if newline >= 0:
                line = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                self._scanned = 0
                return line
            self._scanned = len(self._buffer)
            if len(self._buffer) > MAX_FRAME_BYTES:
                raise self._fail(
                    f"agent {op}: a line from the guest is over {MAX_FRAME_BYTES} bytes"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(_RECV_BYTES)
            except TimeoutError:
                raise
            except OSError as exc:
                raise self._fail(f"agent {op}: connection failed ({exc!r})") from None
            if not chunk:
                raise self._fail("agent connection closed by QEMU")
            self._buffer += chunk

    def close(self) -> None:
        self._broken = self._broken or "closed"
        self._sock.close()


class _Held:
    """Releases the channel's lock on exit (it was acquired with a timeout)."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()
