"""`wrenn shell` under a real pseudo-terminal, and `wrenn exec` stopped by Ctrl-C."""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator

import pytest

from .conftest import Cli


class Terminal:
    """A pseudo-terminal with the CLI on its other side, read with a deadline."""

    def __init__(self, cli: Cli, *args: str) -> None:
        self.master, self.slave = os.openpty()
        self.resize(24, 80)
        self.settings = termios.tcgetattr(self.slave)
        self.output = b""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "wrenn", *args],
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            env={**cli.env, "TERM": "dumb"},
            start_new_session=True,
        )

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def _read_some(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out; the terminal showed {self.output[-2000:]!r}")
        ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
        if ready:
            try:
                self.output += os.read(self.master, 65536)
            except OSError:  # the other side is gone
                time.sleep(0.05)

    def read_until(self, needle: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while needle.encode() not in self.output:
            self._read_some(deadline)

    def read_until_match(self, pattern: str, timeout: float = 30.0) -> str:
        """The first group of ``pattern`` once it is in the output."""
        deadline = time.monotonic() + timeout
        while (found := re.search(pattern, self.output.decode(errors="replace"))) is None:
            self._read_some(deadline)
        return found.group(1)

    def is_raw(self) -> bool:
        lflag = termios.tcgetattr(self.slave)[3]
        return not lflag & (termios.ICANON | termios.ECHO)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def terminal_for(cli: Cli) -> Iterator[object]:
    opened: list[Terminal] = []

    def open_terminal(*args: str) -> Terminal:
        opened.append(Terminal(cli, *args))
        return opened[-1]

    yield open_terminal
    for terminal in opened:
        terminal.close()


def _wait_raw(terminal: Terminal) -> None:
    deadline = time.monotonic() + 30
    while not terminal.is_raw():
        assert terminal.process.poll() is None, terminal.output
        assert time.monotonic() < deadline, "the CLI never put the terminal in raw mode"
        time.sleep(0.05)


def test_shell_types_resizes_exits_and_restores_the_terminal(
    terminal_for: object, capsule_id: str
) -> None:
    terminal = terminal_for("shell", capsule_id, "--cmd", "/bin/sh")  # type: ignore[operator]
    _wait_raw(terminal)
    terminal.type('echo "hel""lo from" the capsule\r')
    terminal.read_until("hello from the capsule")

    terminal.type("stty size\r")
    terminal.read_until("24 80")

    terminal.resize(30, 100)
    terminal.process.send_signal(signal.SIGWINCH)
    # The resize travels as its own message; ask until the remote terminal has it.
    for attempt in range(20):
        terminal.type(f"echo size-$((1+{attempt})) $(stty size)\r")
        size = terminal.read_until_match(rf"size-{attempt + 1} (\d+ \d+)")
        if size == "30 100":
            break
        time.sleep(0.2)
    assert size == "30 100"

    terminal.type("exit 3\r")
    assert terminal.process.wait(timeout=30) == 3
    assert termios.tcgetattr(terminal.slave) == terminal.settings


def test_shell_restores_the_terminal_when_killed(terminal_for: object, capsule_id: str) -> None:
    terminal = terminal_for("shell", capsule_id, "--cmd", "/bin/sh")  # type: ignore[operator]
    _wait_raw(terminal)
    terminal.type("echo rea''dy\r")
    terminal.read_until("ready")
    terminal.process.send_signal(signal.SIGTERM)
    assert terminal.process.wait(timeout=30) == 128 + signal.SIGTERM
    assert termios.tcgetattr(terminal.slave) == terminal.settings


def test_shell_without_a_terminal_is_a_usage_error(cli: Cli, capsule_id: str) -> None:
    done = cli("shell", capsule_id, input=b"")
    assert done.returncode == 2 and "needs a terminal" in done.stderr


def test_exec_ctrl_c_stops_the_remote_command(cli: Cli, capsule_id: str) -> None:
    script = 'trap "echo got-term; exit 9" TERM; echo started; while true; do sleep 0.1; done'
    # The command line as a user's terminal starts it: Ctrl-C raises KeyboardInterrupt.
    # A test run started in the background by a non-interactive shell (nohup ... &) has
    # SIGINT ignored, and children inherit that; Python then installs no handler.
    with_ctrl_c = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "sys.argv[0] = 'wrenn'; runpy.run_module('wrenn', run_name='__main__', alter_sys=True)"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", with_ctrl_c, "exec", capsule_id, "--", "sh", "-c", script],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "started\n"  # streamed live, before the end
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
    assert process.returncode == 130, err
    assert "got-term" in out
    assert "Traceback" not in err
    listing = cli.ok("exec", capsule_id, "--", "ps", "-eo", "args").stdout
    assert "while true" not in listing
