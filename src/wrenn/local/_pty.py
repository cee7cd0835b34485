"""PTY sessions that outlive their WebSocket.

A session owns a terminal of the capsule (a ``CapsuleTerminal``, whatever the
backend) and its program; WebSockets attach and detach.  Output produced while
nobody is attached is dropped, like envd (a reconnect gets only new output).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

from ._runtime import Sandbox, add_listener

Listener = Callable[[str, bytes], None]  # ("output", data) | ("exit", b"")

# After the program's exit, how long its terminal's buffered output may still take
# to arrive: a background job that kept the terminal open must not hold the exit.
DRAIN_AFTER_EXIT = 0.3


class PtySession:
    def __init__(
        self,
        sandbox: Sandbox,
        tag: str,
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        cols: int,
        rows: int,
    ) -> None:
        self.tag = tag
        self.cmd = argv[0]
        self.args = argv[1:]
        self._loop = asyncio.get_running_loop()
        self._listeners: list[Listener] = []
        self._terminal = sandbox.open_terminal(argv, env, cwd, cols, rows)
        self.proc = self._terminal.proc
        self._output_ended = asyncio.Event()
        self._terminal.listen(self._on_terminal)
        self.exit_code: int | None = None
        self.done = asyncio.Event()
        self._finisher = self._loop.create_task(self._finish())

    def listen(self, listener: Listener) -> Callable[[], None]:
        return add_listener(self._listeners, listener)

    def hold_output(self) -> None:
        """Stop reading the terminal (a slow client): the program blocks on output."""
        self._terminal.hold_output()

    def release_output(self) -> None:
        self._terminal.release_output()

    def _emit(self, kind: str, data: bytes) -> None:
        for listener in list(self._listeners):
            listener(kind, data)

    def _on_terminal(self, kind: str, data: bytes) -> None:
        if kind == "output":
            self._emit("output", data)
        else:
            self._output_ended.set()

    async def _finish(self) -> None:
        code = await self.proc.wait()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._output_ended.wait(), DRAIN_AFTER_EXIT)
        self._terminal.close()
        self.exit_code = code
        self.done.set()
        self._emit("exit", b"")

    def write(self, data: bytes) -> None:
        self._terminal.write(data)

    def resize(self, cols: int, rows: int) -> None:
        self._terminal.resize(cols, rows)

    async def kill(self) -> None:
        await self.proc.send_signal(signal.SIGKILL)

    async def close(self) -> None:
        """Kill and wait (used on destroy and shutdown)."""
        await self.kill()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.done.wait(), 5)
        if not self._finisher.done():
            self._finisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._finisher
            self._terminal.close()
