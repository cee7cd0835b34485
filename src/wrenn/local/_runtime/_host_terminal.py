"""A terminal of a host backend: a host pty pair, its master read on the loop.

The program (a ``HostProcess``) gets the slave as stdin, stdout and stderr; the
server keeps only the master.  Output is read with ``add_reader`` (no thread); a
hold removes the reader, so the program blocks once the pty buffer is full.  The
end of output is EIO (or EOF) on the master once every slave fd is closed, which a
background job that kept the slave may delay past the program's exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import struct
import termios
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._host_process import HostProcess
from ._process import add_listener
from ._terminal import CapsuleTerminal, TerminalListener

if TYPE_CHECKING:
    from ._host import HostSandbox

READ_BYTES = 65536


class HostTerminal(CapsuleTerminal):
    def __init__(
        self,
        sandbox: HostSandbox,
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        cols: int,
        rows: int,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._listeners: list[TerminalListener] = []
        master, slave = sandbox.open_pty()
        self._master: int | None = master
        try:
            self._set_size(cols, rows)
            self.proc = HostProcess(sandbox, argv, env, cwd, tty_slave=slave)
        except BaseException:
            os.close(master)
            self._master = None
            raise
        finally:
            os.close(slave)  # the program has its own copy
        os.set_blocking(master, False)
        self._ended = False
        self._holds = 0
        self._loop.add_reader(master, self._on_output)

    def listen(self, listener: TerminalListener) -> Callable[[], None]:
        return add_listener(self._listeners, listener)

    def _reading(self) -> bool:
        return self._master is not None and not self._ended

    def hold_output(self) -> None:
        self._holds += 1
        if self._holds == 1 and self._reading():
            assert self._master is not None
            self._loop.remove_reader(self._master)

    def release_output(self) -> None:
        if self._holds == 0:
            return
        self._holds -= 1
        if self._holds == 0 and self._reading():
            assert self._master is not None
            self._loop.add_reader(self._master, self._on_output)

    def _emit(self, kind: str, data: bytes) -> None:
        for listener in list(self._listeners):
            listener(kind, data)

    def _on_output(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, READ_BYTES)
        except BlockingIOError:
            return
        except OSError:  # EIO once every slave fd is closed
            data = b""
        if data:
            self._emit("output", data)
            return
        self._loop.remove_reader(self._master)
        self._ended = True
        self._emit("end", b"")

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

    def close(self) -> None:
        if self._master is None:
            return
        if self._reading():
            self._loop.remove_reader(self._master)
        os.close(self._master)
        self._master = None
