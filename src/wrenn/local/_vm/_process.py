"""A process in a microVM as a ``CapsuleProcess``: the server drives a ``GuestProcess``.

``GuestProcess`` is blocking and thread-based; the server runs on an asyncio loop.
``VmProcess`` bridges the two with one pump thread per process:

- The pump calls ``GuestProcess.read()`` in slices of ``READ_SLICE`` seconds (so it
  sees ``close()`` within a slice) and hands each chunk to the loop thread with
  ``call_soon_threadsafe``; listeners are only ever called on the loop thread, in
  the order the guest sent the output, and get ("exit", b"") once after it all.
- Back-pressure: while output is held (``hold_output``, counted) the pump does not
  call ``read()``, so nothing is acknowledged to the guest, whose credit runs out:
  the guest process blocks on its next write, as a host process does on a full
  pipe.  At most ``POSTED_LIMIT`` bytes (plus the chunk read last) are handed to
  the loop and not yet delivered, so a busy loop is a reader that does not read, too.  Chunks already
  handed over when a hold starts wait on the loop side until the release.
- The exit: a guest's exit status is negative for a signal death; like
  ``HostProcess`` that becomes ``exit_code`` -1 with ``death_signal`` set.  The
  guest reports the exit after the last output, so while output is held a
  process that still has output to send does not report its exit until released.
- Failure: if the channel breaks or the guest breaks the protocol for this process
  (an ``AgentError`` from ``read``), or the agent does not answer a signal, the
  process ends as failed, held or not: output already read is delivered (holds or not), then
  ("exit", b"") with ``exit_code`` -1, ``death_signal`` None and ``failure`` set
  to the reason.  Nothing waits on a guest that is gone.
- ``close()`` (server shutdown, tests) stops the pump within a slice and ends the
  process the same way (failure "closed") if it had not ended; the guest is told to
  forget it (``detach``: it keeps running there, its output dropped).

- Terminal mode (``terminal=True``, a guest process started with ``pty=True``, for
  ``_vm._terminal``): the output is the terminal's, not the process's.  The same
  pump, holds and order, but the chunks go to ``listen_terminal`` listeners as
  ("output", data), with one ("end", b"") right before the exit; the process's own
  listeners get only the exit, as for a host process on a pty.

Every wait in the pump is bounded (``READ_SLICE``) and it ends on the exit, on a
failure and on ``close()``.  Not covered: stdin of a process without a terminal.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import threading
from typing import TYPE_CHECKING

from .._runtime._process import CapsuleProcess, Listener, add_listener
from .._runtime._terminal import TerminalListener
from ._agent import AgentError

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._guest_processes import GuestProcess, GuestProcesses

READ_SLICE = 0.2  # seconds per blocking read or wait in the pump
POSTED_LIMIT = 256 * 1024  # bytes handed to the loop and not yet delivered
SIGNAL_TIMEOUT = 10.0  # seconds for the agent to take a signal
_EXIT_AFTER_REFUSAL = 1.0  # seconds an exit may lag behind a refused signal
_pump_names = itertools.count(1)


def start_vm_process(
    processes: GuestProcesses,
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    *,
    want_pid: bool = True,
    terminal: tuple[int, int] | None = None,
) -> VmProcess:
    """``Sandbox.start_process`` for a microVM (call it on the loop thread).

    The start is one agent round trip, blocking for at most the channel's request
    timeout.  ``want_pid`` changes nothing: the guest pid comes with the start.
    ``terminal``: (cols, rows) of a guest pty to run it on, in terminal mode (see
    above).  A refused start raises ``OSError``.
    """
    del want_pid
    try:
        if terminal is None:
            guest = processes.start(argv, env, cwd)
        else:
            cols, rows = terminal
            guest = processes.start(argv, env, cwd, pty=True, rows=rows, cols=cols)
    except AgentError as exc:
        raise OSError(f"the guest agent did not start {argv[:1]!r}: {exc}") from exc
    return VmProcess(guest, terminal=terminal is not None)


class VmProcess(CapsuleProcess):
    def __init__(self, guest: GuestProcess, *, terminal: bool = False) -> None:
        self._loop = asyncio.get_running_loop()
        self._guest = guest
        self._listeners: list[Listener] = []
        # Terminal mode: where the output goes instead (see the module's docstring).
        self._terminal = terminal
        self._terminal_listeners: list[TerminalListener] = []
        self.exited = asyncio.Event()
        self.exit_code: int | None = None
        self.death_signal: int | None = None
        self.failure: str | None = None  # why the process was lost, if it was
        # Shared with the pump: the holds, the bytes posted to the loop, closing.
        self._gate = threading.Condition()
        self._holds = 0
        self._posted = 0
        self._closing: str | None = None
        # The loop thread's side: chunks posted but not delivered, and the end.
        self._pending: collections.deque[tuple[str, bytes]] = collections.deque()
        self._end: tuple[int, int | None, str | None] | None = None
        self._pump = threading.Thread(
            target=self._run_pump, name=f"wrenn-vm-pump-{next(_pump_names)}", daemon=True
        )
        self._pump.start()

    # the pump thread ----------------------------------------------------------------
    def _run_pump(self) -> None:
        failure: str | None = None
        try:
            while (failure := self._wait_for_room()) is None:
                try:
                    chunk = self._guest.read(READ_SLICE)
                except TimeoutError:
                    continue
                if chunk is None:
                    status = self._guest.exit_code
                    assert status is not None
                    code, sig = (status, None) if status >= 0 else (-1, -status)
                    self._post(self._on_end, code, sig, None)
                    return
                with self._gate:
                    self._posted += len(chunk.data)
                self._post(self._on_chunk, chunk.stream, chunk.data)
        except AgentError as exc:
            failure = str(exc)
        except BaseException as exc:  # a bug must still end the process for its waiters
            failure = f"pump failed: {exc!r}"
        # The end first: telling a hung agent to detach takes up to its request timeout.
        self._post(self._on_end, -1, None, failure)
        with contextlib.suppress(AgentError):
            self._guest.close()  # forget it here; the guest drops its output

    def _wait_for_room(self) -> str | None:
        """Wait, a slice at a time, until output may be read; the close reason if closing.

        A failed guest process ends the wait too (its next read raises), so a broken
        channel ends the process even while its output is held."""
        with self._gate:
            while (
                self._closing is None
                and self._guest.error is None
                and (self._holds or self._posted >= POSTED_LIMIT)
            ):
                self._gate.wait(READ_SLICE)
            return self._closing

    def _post(self, callback: Callable[..., None], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to tell
            self._loop.call_soon_threadsafe(callback, *args)

    # the loop thread ------------------------------------------------------------------
    def _on_chunk(self, kind: str, data: bytes) -> None:
        self._pending.append((kind, data))
        self._deliver()

    def _on_end(self, code: int, sig: int | None, failure: str | None) -> None:
        if self._end is None:
            self._end = (code, sig, failure)
        self._deliver()

    def _deliver(self) -> None:
        """Deliver pending output while nothing is held (all of it on a failure), then
        the end once no output is pending."""
        failed = self._end is not None and self._end[2] is not None
        while self._pending and (failed or not self._holds):
            kind, data = self._pending.popleft()
            with self._gate:
                self._posted -= len(data)
                self._gate.notify_all()
            if self._terminal:
                _call_all(self._terminal_listeners, "output", data)
            else:
                _call_all(self._listeners, kind, data)
        if self._end is None or self._pending or self.exited.is_set():
            return
        self.exit_code, self.death_signal, self.failure = self._end
        if self._terminal:
            _call_all(self._terminal_listeners, "end", b"")
        self.exited.set()
        _call_all(self._listeners, "exit", b"")

    def listen(self, listener: Listener) -> Callable[[], None]:
        return add_listener(self._listeners, listener)

    def listen_terminal(self, listener: TerminalListener) -> Callable[[], None]:
        """In terminal mode: add a listener of the terminal's output (see
        ``CapsuleTerminal.listen``); returns the call that removes it."""
        return add_listener(self._terminal_listeners, listener)

    def hold_output(self) -> None:
        with self._gate:
            self._holds += 1

    def release_output(self) -> None:
        with self._gate:
            if self._holds == 0:
                return
            self._holds -= 1
            self._gate.notify_all()
        if not self._holds:
            self._deliver()

    @property
    def guest(self) -> GuestProcess:
        """The guest process it drives (a terminal sends its input and size there)."""
        return self._guest

    # identity, signals and the end ------------------------------------------------------
    async def resolve(self, timeout: float = 2.0) -> int:
        return self._guest.guest_pid  # known since the start

    async def send_signal(self, sig: int) -> None:
        if self.exited.is_set() or self._end is not None or self._closing is not None:
            return
        try:
            await asyncio.wait_for(asyncio.to_thread(self._guest.signal, sig), SIGNAL_TIMEOUT)
        except AgentError as exc:
            # Refused: the guest forgets a process right before it reports its exit,
            # so the exit is on its way; if it does not come, or the agent did not
            # answer at all, the process is lost.  A broken channel fails the read too.
            try:
                await asyncio.to_thread(self._guest.wait, _EXIT_AFTER_REFUSAL)
            except (TimeoutError, AgentError):
                self._stop(f"signal {sig}: {exc}")
        except TimeoutError:
            self._stop(f"signal {sig}: no answer within {SIGNAL_TIMEOUT} s")

    def describe_exit(self) -> str:
        if self.failure is not None:
            return f"was lost ({self.failure})"
        return super().describe_exit()

    def close(self) -> None:
        """Stop the pump (within ``READ_SLICE``) and end the process as failed if it has
        not ended; safe from any thread, and more than once."""
        self._stop("closed")

    def _stop(self, reason: str) -> None:
        with self._gate:
            if self._closing is None:
                self._closing = reason
            self._gate.notify_all()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the pump thread to end; whether it did."""
        self._pump.join(timeout)
        return not self._pump.is_alive()


def _call_all(listeners: list[Listener], kind: str, data: bytes) -> None:
    for listener in list(listeners):
        listener(kind, data)
