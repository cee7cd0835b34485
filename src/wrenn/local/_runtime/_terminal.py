"""The interface of one terminal in a capsule, as the rest of the server sees it.

A backend opens one with ``Sandbox.open_terminal`` and hands back a
``CapsuleTerminal``: a program running on a terminal of the capsule, its output
and its input.  Outside ``_runtime`` a terminal is used only through the members
in ``TERMINAL_INTERFACE``.  Nothing here assumes a host pty: a host backend reads
a pty master fd (``_host_terminal``), a microVM's terminal is a pty in the guest,
driven through its agent (``_vm._terminal``).
"""

from __future__ import annotations

import abc
from collections.abc import Callable

from ._process import CapsuleProcess

# Gets ("output", bytes) for every chunk, in order, then ("end", b"") once when the
# terminal will give no more output (which may come before or after the program's
# exit: a background job can keep a host pty open).
TerminalListener = Callable[[str, bytes], None]

# Every member of a terminal that code outside ``_runtime`` may use.
TERMINAL_INTERFACE = frozenset(
    {"proc", "listen", "hold_output", "release_output", "write", "resize", "close"}
)


class CapsuleTerminal(abc.ABC):
    """One program on a terminal of a capsule (started by ``Sandbox.open_terminal``)."""

    # The program, used through ``PROCESS_INTERFACE``: its pid, signals and exit.
    # Its own listeners get only the exit; its output is the terminal's.
    proc: CapsuleProcess

    @abc.abstractmethod
    def listen(self, listener: TerminalListener) -> Callable[[], None]:
        """Add ``listener`` (see ``TerminalListener``; called on the loop thread);
        returns the call that removes it."""

    @abc.abstractmethod
    def hold_output(self) -> None:
        """Stop delivering output until every hold is released (counted holds): the
        program then blocks on output once the terminal's buffer is full."""

    @abc.abstractmethod
    def release_output(self) -> None:
        """Release one ``hold_output`` (no-op when nothing is held)."""

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Type ``data`` into the terminal, after what was written before.  Never
        blocks the loop: input the terminal does not take now is dropped (a full
        input buffer), and so is everything once the terminal is closed."""

    @abc.abstractmethod
    def resize(self, cols: int, rows: int) -> None:
        """Set the terminal's size (the program gets SIGWINCH); a size of 0 is ignored."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the terminal holds (fds, threads); no output after it.  Does
        not end the program (signal ``proc`` for that); safe more than once."""
