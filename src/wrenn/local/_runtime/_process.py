"""The interface of one capsule process, as the rest of the server sees it.

A backend starts processes with ``Sandbox.start_process`` and hands back a
``CapsuleProcess``; outside ``_runtime`` a process is used only through the
members in ``PROCESS_INTERFACE`` (tests/test_runtime_boundary.py checks it).
Nothing here assumes a host process: a backend whose processes run behind a
guest agent implements the same members over its channel.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import signal
from collections.abc import Callable

# Gets ("stdout"|"stderr", bytes) for output, then ("exit", b"") once.
Listener = Callable[[str, bytes], None]


# Every member of a process that code outside ``_runtime`` may use.
def add_listener(
    listeners: list[Callable[[str, bytes], None]], listener: Callable[[str, bytes], None]
) -> Callable[[], None]:
    """Append ``listener`` to ``listeners``; returns the call that removes it (once or
    more: a second removal does nothing)."""
    listeners.append(listener)

    def remove() -> None:
        with contextlib.suppress(ValueError):
            listeners.remove(listener)

    return remove


PROCESS_INTERFACE = frozenset(
    {
        "exited",
        "exit_code",
        "listen",
        "hold_output",
        "release_output",
        "wait",
        "describe_exit",
        "resolve",
        "send_signal",
        "terminate",
    }
)


class CapsuleProcess(abc.ABC):
    """One command running in a capsule (started by ``Sandbox.start_process``)."""

    # Set once the process has ended and all of its output has been delivered,
    # right before the ("exit", b"") call.
    exited: asyncio.Event
    # The exit status once ``exited`` is set (-1 for a signal death, like envd), else None.
    exit_code: int | None
    # The signal that killed it, when one did (for the server's own messages only).
    death_signal: int | None

    @abc.abstractmethod
    def listen(self, listener: Listener) -> Callable[[], None]:
        """Add ``listener`` (see ``Listener``; a process on a terminal gets only the
        exit call, its output is the terminal's); returns the call that removes it."""

    @abc.abstractmethod
    def hold_output(self) -> None:
        """Stop delivering output until every hold is released (counted holds): the
        process then blocks on its next write once its buffer is full."""

    @abc.abstractmethod
    def release_output(self) -> None:
        """Release one ``hold_output`` (no-op when nothing is held)."""

    @abc.abstractmethod
    async def resolve(self, timeout: float = 2.0) -> int:
        """The pid the capsule sees for this process (asks once, then remembered)."""

    @abc.abstractmethod
    async def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the process and everything it started; nothing once it has ended."""

    async def wait(self) -> int:
        """The exit status, once the process has ended and its output was delivered."""
        await self.exited.wait()
        assert self.exit_code is not None
        return self.exit_code

    async def terminate(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds."""
        await self.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.exited.wait(), grace)
        except asyncio.TimeoutError:
            await self.send_signal(signal.SIGKILL)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.exited.wait(), 5)

    def describe_exit(self) -> str:
        """How the process ended, for a log line or an error message."""
        if self.death_signal is not None:
            try:
                name = signal.Signals(self.death_signal).name
            except ValueError:
                name = f"signal {self.death_signal}"
            return f"was killed by {name}"
        return f"exited with status {self.exit_code}"
