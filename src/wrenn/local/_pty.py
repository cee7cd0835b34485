"""PTY sessions that outlive their WebSocket.

A session owns the master fd and the process; WebSockets attach and detach.
Output produced while nobody is attached is dropped, like envd (a reconnect
gets only new output).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import struct
import termios
from collections.abc import Callable

from ._runtime import Sandbox

Listener = Callable[[str, bytes], None]  # ("output", data) | ("exit", b"")


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
        master, slave = sandbox.open_pty()
        self._master: int | None = master
        try:
            self._set_size(cols, rows)
            self.proc = sandbox.start_process(argv, env, cwd, tty_slave=slave)
        except BaseException:
            os.close(master)
            self._master = None
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self._loop.add_reader(master, self._on_output)
        self._eof = asyncio.Event()
        self._holds = 0
        self.exit_code: int | None = None
        self.done = asyncio.Event()
        self._finisher = self._loop.create_task(self._finish())

    def listen(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    def hold_output(self) -> None:
        """Stop reading the terminal (a slow client): the program blocks on output."""
        self._holds += 1
        if self._holds == 1 and self._master is not None and not self._eof.is_set():
            self._loop.remove_reader(self._master)

    def release_output(self) -> None:
        if self._holds == 0:
            return
        self._holds -= 1
        if self._holds == 0 and self._master is not None and not self._eof.is_set():
            self._loop.add_reader(self._master, self._on_output)

    def _emit(self, kind: str, data: bytes) -> None:
        for listener in list(self._listeners):
            listener(kind, data)

    def _on_output(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO once every slave fd is closed
            data = b""
        if data:
            self._emit("output", data)
        else:
            self._loop.remove_reader(self._master)
            self._eof.set()

    async def _finish(self) -> None:
        code = await self.proc.wait()
        # Let buffered output through; a background job may keep the slave open.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._eof.wait(), 0.3)
        self._close_master()
        self.exit_code = code
        self.done.set()
        self._emit("exit", b"")

    def _close_master(self) -> None:
        if self._master is not None:
            if not self._eof.is_set():
                self._loop.remove_reader(self._master)
            os.close(self._master)
            self._master = None

    def _set_size(self, cols: int, rows: int) -> None:
        if self._master is not None:
            fcntl.ioctl(self._master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def write(self, data: bytes) -> None:
        if self._master is None or not data:
            return
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._master, view)
            except BlockingIOError:
                break  # the terminal is not reading; drop like envd's full buffer
            except OSError:
                return
            view = view[n:]

    def resize(self, cols: int, rows: int) -> None:
        if cols > 0 and rows > 0:
            with contextlib.suppress(OSError):
                self._set_size(cols, rows)  # the kernel sends SIGWINCH to the foreground group

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
            self._close_master()
