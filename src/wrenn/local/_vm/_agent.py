"""The host end of the guest agent's virtio-serial port (a unix socket QEMU serves).

QEMU drops whatever is written to the port before the guest agent has opened it
(MICROVM-NOTES), so ``handshake()`` repeats a ping until one is answered; only
then are real requests sent.  Answers are matched by id: a late pong from an
earlier ping, or the answer to a request that timed out, is skipped.  One
request at a time (a lock), every wait bounded.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class AgentError(RuntimeError):
    pass


@dataclass(frozen=True)
class ExecResult:
    exit_code: int  # negative: killed by that signal
    stdout: bytes
    stderr: bytes
    timed_out: bool = False


class AgentChannel:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""
        self._next_id = 1
        self._lock = threading.Lock()

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

    def handshake(self, timeout: float, interval: float = 0.2) -> dict[str, Any]:
        """Ping until the agent answers; the answer (its pid and clock)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            sent: set[int] = set()
            while time.monotonic() < deadline:
                request_id = self._send({"op": "ping"})
                sent.add(request_id)
                wait_until = min(deadline, time.monotonic() + interval)
                try:
                    while True:
                        answer = self._read_message(wait_until)
                        if answer.get("id") in sent and answer.get("ok"):
                            return answer
                except TimeoutError:
                    continue
        raise AgentError(f"the guest agent did not answer a ping within {timeout} s")

    def request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._lock:
            request_id = self._send(message)
            while True:
                try:
                    answer = self._read_message(deadline)
                except TimeoutError:
                    raise AgentError(
                        f"agent {message.get('op')}: no answer within {timeout} s"
                    ) from None
                if answer.get("id") != request_id:
                    continue  # a stale answer (a late pong, or a request that timed out)
                if not answer.get("ok"):
                    raise AgentError(f"agent {message.get('op')}: {answer.get('error')}")
                return answer

    def exec(
        self,
        argv: list[str],
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        timeout: float = 30.0,
    ) -> ExecResult:
        message = {"op": "exec", "argv": argv, "env": env or {}, "cwd": cwd, "timeout": timeout}
        # The guest kills the command at ``timeout``; the margin covers that kill
        # and the trip back through a slow (emulated) guest.
        answer = self.request(message, timeout + 10.0)
        return ExecResult(
            exit_code=int(answer["exit_code"]),
            stdout=base64.b64decode(answer["stdout"]),
            stderr=base64.b64decode(answer["stderr"]),
            timed_out=bool(answer.get("timed_out")),
        )

    def set_clock(self, unix_ns: int | None = None, timeout: float = 5.0) -> None:
        self.request({"op": "set_clock", "unix_ns": unix_ns or time.time_ns()}, timeout)

    def _send(self, message: dict[str, Any]) -> int:
        request_id = self._next_id
        self._next_id += 1
        self._sock.sendall(json.dumps({"id": request_id, **message}).encode() + b"\n")
        return request_id

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self._sock.settimeout(remaining)
            chunk = self._sock.recv(1 << 16)  # raises TimeoutError when the time is up
            if not chunk:
                raise AgentError("agent connection closed by QEMU")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            decoded: dict[str, Any] = json.loads(line)
        except ValueError:
            return {}  # a torn line from before a restore: not an answer to anything
        return decoded

    def close(self) -> None:
        self._sock.close()
