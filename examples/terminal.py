"""An interactive terminal in a capsule: type, resize, read the screen, re-attach by tag."""

from __future__ import annotations

import re

from _backend import backend

from wrenn import Capsule, PtySession


def size_line(screen: bytes) -> str:
    """The last `stty size` answer ("rows cols") on the screen."""
    rows, cols = re.findall(rb"(\d+) (\d+)\r\n", screen)[-1]
    return f"{rows.decode()} rows x {cols.decode()} columns"


def read_until(terminal: PtySession, marker: bytes) -> bytes:
    seen = b""
    for event in terminal:
        if event.type == "output" and isinstance(event.data, bytes):
            seen += event.data
        if marker in seen or len(seen) > 1_000_000:
            break
    return seen


def main() -> None:
    with backend() as keys, Capsule(**keys) as capsule:
        with capsule.pty(cols=100, rows=30) as terminal:
            terminal.write("stty size; echo ready$((1+1))\n")
            size = size_line(read_until(terminal, b"ready2"))
            print(f"terminal {terminal.tag} (pid {terminal.pid}) says its size is {size}")
            terminal.resize(120, 40)
            terminal.write("stty size; echo ready$((1+2))\n")
            print(f"after resize: {size_line(read_until(terminal, b'ready3'))}")
        print("leaving the block killed the terminal")

        background = capsule.pty()
        background.__enter__()
        tag = background.tag
        background.close()  # detach; the shell keeps running
        assert tag is not None
        with capsule.pty_connect(tag) as again:
            again.write("exit 5\n")
            codes = [event.exit_code for event in again if event.type == "exit"]
        print(f"re-attached to {tag} and saw it exit with {codes[0]}")
    print("done")


if __name__ == "__main__":
    main()
