"""A terminal in a microVM as a ``CapsuleTerminal``: a pty in the guest, over its agent.

The program is a guest process started with ``pty=True``; its output comes through
``VmProcess`` in terminal mode (the same pump, holds and order as any process).
Input and resizes are agent requests, which block for up to the channel's request
timeout, so they never run on the loop thread: ``write`` and ``resize`` queue them
for one worker thread per terminal, which sends them in order.  The queue is
bounded (``INPUT_LIMIT`` bytes of input waiting, consecutive sizes merged and at
most ``SIZES_LIMIT`` of them): a terminal whose agent is slow or gone drops further
input, as a host pty drops what its full buffer does not take.  Sizes have a bound
of their own, so input that filled the queue does not cost the terminal its size.
A refused request (the program has exited, the channel broke) is dropped too.

``close()`` (after the program's exit, or on the server's shutdown) stops the
worker, which ends within ``IDLE_SLICE`` or once the request it is sending ends,
and the output pump (see ``VmProcess.close``).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._runtime._terminal import CapsuleTerminal, TerminalListener
from ._agent import AgentError
from ._process import VmProcess, start_vm_process

if TYPE_CHECKING:
    from ._guest_processes import GuestProcesses

INPUT_LIMIT = 64 * 1024  # bytes of input queued and not yet sent to the guest
SIZES_LIMIT = 16  # sizes queued between pieces of input and not yet sent
IDLE_SLICE = 0.2  # seconds the worker waits for work before it checks for close
_worker_names = itertools.count(1)


def open_vm_terminal(
    processes: GuestProcesses,
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    cols: int,
    rows: int,
) -> VmTerminal:
    """``Sandbox.open_terminal`` for a microVM (on the loop thread; the start is one
    agent round trip).  A refused start raises ``OSError``."""
    proc = start_vm_process(processes, argv, env, cwd, terminal=(cols, rows))
    return VmTerminal(proc)


class VmTerminal(CapsuleTerminal):
    def __init__(self, proc: VmProcess) -> None:
        self.proc = proc
        self._vm_process = proc
        self._guest = proc.guest
        self._changed = threading.Condition()
        # Requests waiting for the worker, in order: input (bytes) or a size (cols, rows).
        self._outbox: collections.deque[bytes | tuple[int, int]] = collections.deque()
        self._queued_bytes = 0
        self._queued_sizes = 0
        self._closed = False
        self._worker = threading.Thread(
            target=self._run_worker, name=f"wrenn-vm-terminal-{next(_worker_names)}", daemon=True
        )
        self._worker.start()

    # output: the process's pump in terminal mode -------------------------------------
    def listen(self, listener: TerminalListener) -> Callable[[], None]:
        return self._vm_process.listen_terminal(listener)

    def hold_output(self) -> None:
        self._vm_process.hold_output()

    def release_output(self) -> None:
        self._vm_process.release_output()

    # input and size: queued for the worker ---------------------------------------------
    def write(self, data: bytes) -> None:
        if not data:
            return
        with self._changed:
            if self._closed:
                return
            room = INPUT_LIMIT - self._queued_bytes
            if room <= 0:
                return  # the guest is not taking input: drop it
            data = data[:room]
            self._queued_bytes += len(data)
            self._outbox.append(data)
            self._changed.notify_all()

    def resize(self, cols: int, rows: int) -> None:
        if cols <= 0 or rows <= 0:
            return
        with self._changed:
            if self._closed:
                return
            if self._outbox and isinstance(self._outbox[-1], tuple):
                self._outbox[-1] = (cols, rows)  # only the last of consecutive sizes counts
            elif self._queued_sizes < SIZES_LIMIT:
                self._queued_sizes += 1
                self._outbox.append((cols, rows))
            self._changed.notify_all()

    def _next_request(self) -> bytes | tuple[int, int] | None:
        """The next request, waiting a slice at a time; None once closed."""
        with self._changed:
            while not self._outbox and not self._closed:
                self._changed.wait(IDLE_SLICE)
            if self._closed:
                return None
            return self._outbox.popleft()

    def _run_worker(self) -> None:
        while (value := self._next_request()) is not None:
            # Refused (exited, closed, a size the guest does not take) or a channel that
            # broke: this request is dropped; the output pump reports a lost process.
            try:
                with contextlib.suppress(AgentError, ValueError, TimeoutError):
                    if isinstance(value, bytes):
                        self._guest.write_stdin(value)
                    else:
                        cols, rows = value
                        self._guest.resize(rows, cols)
            finally:
                with self._changed:
                    if self._closed:
                        pass
                    elif isinstance(value, bytes):
                        self._queued_bytes -= len(value)
                    else:
                        self._queued_sizes -= 1

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._outbox.clear()
            self._queued_bytes = self._queued_sizes = 0
            self._changed.notify_all()
        self._vm_process.close()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the worker and the pump to end; whether they did."""
        self._worker.join(timeout)
        return not self._worker.is_alive() and self._vm_process.join(timeout)
