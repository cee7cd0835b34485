"""A small blocking QMP client: JSON lines over QEMU's unix socket.

Why not the ``qemu.qmp`` package from PyPI: it is asyncio-only (the engine is
blocking and is meant to run in worker threads of either asyncio or trio), it is
still versioned 0.0.x, and the engine needs five commands.  Every call here is
bounded by a deadline; events QEMU sends between answers are kept in ``events``.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any


class QmpError(RuntimeError):
    pass


class QmpClient:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""
        self.events: list[dict[str, Any]] = []

    @classmethod
    def connect(cls, path: Path, timeout: float) -> QmpClient:
        """Connect (retrying while QEMU creates the socket), then negotiate capabilities."""
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                sock.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if time.monotonic() >= deadline:
                    raise QmpError(f"QMP socket {path} did not appear within {timeout} s") from None
                time.sleep(0.01)
        client = cls(sock)
        try:
            greeting = client._read_message(deadline)
            if "QMP" not in greeting:
                raise QmpError(f"not a QMP greeting: {greeting!r}")
            client.execute("qmp_capabilities", timeout=max(0.1, deadline - time.monotonic()))
        except BaseException:
            sock.close()
            raise
        return client

    def execute(
        self, command: str, arguments: dict[str, Any] | None = None, *, timeout: float = 10.0
    ) -> Any:
        message: dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        deadline = time.monotonic() + timeout
        self._sock.settimeout(timeout)
        self._sock.sendall(json.dumps(message).encode() + b"\n")
        while True:
            answer = self._read_message(deadline)
            if "event" in answer:
                self.events.append(answer)
                continue
            if "error" in answer:
                error = answer["error"]
                raise QmpError(f"{command}: {error.get('class')}: {error.get('desc')}")
            return answer.get("return")

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise QmpError("QMP answer timed out")
            self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                raise QmpError("QMP answer timed out") from None
            if not chunk:
                raise QmpError("QMP connection closed by QEMU")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        decoded: dict[str, Any] = json.loads(line)
        return decoded

    def close(self) -> None:
        self._sock.close()
