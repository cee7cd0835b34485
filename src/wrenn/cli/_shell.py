"""``wrenn shell``: an interactive terminal inside a capsule, over its PTY WebSocket.

The local terminal is put in raw mode (every key, Ctrl-C included, goes to the remote
shell), window size changes follow through SIGWINCH, and the terminal's settings are
restored on every way out: the shell exiting, the connection dropping, an error, or a
signal to this process.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import click

from .._constants import CLI_SHELL_POLL
from .._exceptions import WrennError
from .._pty import PtyEventType
from ._app import CONTEXT_SETTINGS, EXIT_USAGE, State, pass_state


def _size() -> tuple[int, int]:
    """The local terminal's size, from the terminal itself (not $COLUMNS/$LINES)."""
    for stream in (sys.stdout, sys.stdin, sys.stderr):
        try:
            size = os.get_terminal_size(stream.fileno())
        except (OSError, ValueError, AttributeError):
            continue
        if size.columns > 0 and size.lines > 0:
            return size.columns, size.lines
    return 80, 24


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Raw mode on ``fd`` for the block; the saved settings are restored however it ends."""
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class _Relay:
    """Terminal output to stdout on a thread; keystrokes and resizes from the main thread."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.done = threading.Event()
        self.exit_code: int | None = None
        self.error: BaseException | None = None

    def read_output(self) -> None:
        out = sys.stdout.fileno()
        try:
            for event in self.session:
                if event.type is PtyEventType.output and isinstance(event.data, bytes):
                    view = memoryview(event.data)
                    while view:
                        view = view[os.write(out, view) :]
                elif event.type is PtyEventType.exit:
                    self.exit_code = event.exit_code
                    return
                elif event.type is PtyEventType.error and event.fatal:
                    self.error = WrennError("pty_error", f"the terminal failed: {event.data}")
                    return
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    def pump_input(self, stdin: int, wake: int) -> None:
        """Send keystrokes until the remote shell ends or stdin closes; resize on SIGWINCH."""
        while not self.done.is_set():
            ready, _, _ = select.select([stdin, wake], [], [], CLI_SHELL_POLL)
            if wake in ready:
                os.read(wake, 4096)
                self.session.resize(*_size())
            if stdin in ready:
                data = os.read(stdin, 4096)
                if not data:
                    return
                self.session.write(data)


@click.command("shell", context_settings=CONTEXT_SETTINGS)
@click.argument("capsule_id", metavar="CAPSULE")
@click.option("--cmd", default="/bin/bash", show_default=True, help="Program to run.")
@click.option("--cwd", default=None, help="Working directory inside the capsule.")
@pass_state
def shell(state: State, capsule_id: str, cmd: str, cwd: str | None) -> int:
    """Open an interactive terminal in CAPSULE; exits with the shell's exit code.

    Every key goes to the remote shell (Ctrl-C interrupts the remote command, Ctrl-D
    or `exit` ends the session). Window size changes follow.

    \b
    Examples:
      wrenn shell cl-0123456789abcdef
      wrenn shell cl-0123456789abcdef --cmd /bin/sh --cwd /workspace
    """
    stdin = sys.stdin.fileno()
    if not os.isatty(stdin):
        click.echo("wrenn: usage: `wrenn shell` needs a terminal; use `wrenn exec`", err=True)
        return EXIT_USAGE
    capsule = state.capsule(capsule_id)
    cols, rows = _size()
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)

    def on_winch(_signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(OSError):
            os.write(wake_write, b"w")

    def on_term(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = {
        sig: signal.signal(sig, handler)
        for sig, handler in (
            (signal.SIGWINCH, on_winch),
            (signal.SIGTERM, on_term),
            (signal.SIGHUP, on_term),
        )
    }
    try:
        with capsule.pty(cmd=cmd, cols=cols, rows=rows, cwd=cwd) as session:
            relay = _Relay(session)
            reader = threading.Thread(target=relay.read_output, name="wrenn-shell", daemon=True)
            with raw_terminal(stdin):
                reader.start()
                relay.pump_input(stdin, wake_read)
                relay.done.wait(2.0 if relay.exit_code is None else 0)
            if relay.error is not None:
                raise relay.error
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(wake_read)
        os.close(wake_write)
    return relay.exit_code if relay.exit_code is not None else 0
