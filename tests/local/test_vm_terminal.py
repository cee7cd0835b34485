"""A terminal in a microVM without QEMU: ``VmTerminal`` driven from an asyncio loop,
against the real guest agent over a socketpair (its programs and ptys are this
host's; they touch no path but the test's temp dir), or an agent that hangs."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wrenn.local._runtime import TERMINAL_INTERFACE, CapsuleTerminal
from wrenn.local._vm._agent import AgentChannel
from wrenn.local._vm._guest_processes import GuestProcesses
from wrenn.local._vm._terminal import INPUT_LIMIT, VmTerminal, open_vm_terminal

from .test_vm_process_adapter import Events, run
from .test_vm_processes import processes  # noqa: F401

ENV = {"PATH": "/usr/bin:/bin", "TERM": "xterm", "LC_ALL": "C"}


def workers() -> list[threading.Thread]:
    names = ("wrenn-vm-pump-", "wrenn-vm-terminal-")
    return [t for t in threading.enumerate() if t.name.startswith(names)]


@pytest.fixture(autouse=True)
def no_thread_is_left() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 10.0
    for thread in workers():
        thread.join(max(0.0, deadline - time.monotonic()))
    assert workers() == []


def record(terminal: CapsuleTerminal) -> Events:
    events: Events = []
    terminal.listen(lambda kind, data: events.append((kind, data)))
    return events


def output(events: Events) -> bytes:
    return b"".join(data for kind, data in events if kind == "output")


async def until(condition: object, timeout: float = 10.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_vm_terminal_implements_the_whole_interface() -> None:
    assert VmTerminal.__abstractmethods__ == frozenset()
    assert sorted(TERMINAL_INTERFACE - set(dir(VmTerminal)) - {"proc"}) == []


def test_input_reaches_the_program_and_its_output_comes_back(
    processes: GuestProcesses,  # noqa: F811
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        terminal = open_vm_terminal(processes, ["cat"], ENV, str(tmp_path), 80, 24)
        events = record(terminal)
        exits: Events = []
        terminal.proc.listen(lambda kind, data: exits.append((kind, data)))
        terminal.write(b"hello\n")
        terminal.write(b"again\n")
        await until(lambda: output(events).count(b"again") == 2)  # the echo, then cat's
        # In order: the terminal's echo and cat's copy of each line, as a pty gives them.
        assert output(events).replace(b"\r\n", b"\n") == b"hello\nhello\nagain\nagain\n"
        terminal.write(b"\x04")  # ^D: end of input, cat exits
        assert await asyncio.wait_for(terminal.proc.wait(), 10.0) == 0
        # The end of output once, after the output and before the process's exit.
        assert events[-1] == ("end", b"") and [k for k, _ in events].count("end") == 1
        assert exits == [("exit", b"")]  # the process's own listeners: only the exit
        assert await terminal.proc.resolve() > 0
        terminal.close()
        terminal.write(b"dropped")  # closed: nothing is queued
        assert isinstance(terminal, VmTerminal) and terminal.join(5.0)

    run(scenario)


def test_the_size_at_start_and_after_a_resize_and_the_exit_code(
    processes: GuestProcesses,  # noqa: F811
    tmp_path: Path,
) -> None:
    script = "stty size; read line; stty size; exit 7"

    async def scenario() -> None:
        terminal = open_vm_terminal(processes, ["sh", "-c", script], ENV, str(tmp_path), 100, 30)
        events = record(terminal)
        await until(lambda: b"30 100" in output(events))
        terminal.resize(0, 5)  # ignored
        terminal.resize(90, 20)
        terminal.resize(132, 43)  # queued after the first size, so the last one counts
        terminal.write(b"go\n")  # sent after the sizes: the program reads it after them
        assert await asyncio.wait_for(terminal.proc.wait(), 10.0) == 7
        assert output(events).replace(b"\r\n", b"\n").endswith(b"go\n43 132\n")
        terminal.close()
        assert isinstance(terminal, VmTerminal) and terminal.join(5.0)

    run(scenario)


def test_a_hold_stops_reading_and_the_program_blocks_until_released(
    processes: GuestProcesses,  # noqa: F811
    tmp_path: Path,
) -> None:
    lines = 300_000  # about 2 MB through the pty: more than the agent's credit window

    async def scenario() -> None:
        terminal = open_vm_terminal(processes, ["seq", str(lines)], ENV, str(tmp_path), 80, 24)
        terminal.hold_output()
        terminal.hold_output()  # counted
        events = record(terminal)
        await asyncio.sleep(1.0)
        assert events == [] and not terminal.proc.exited.is_set()
        terminal.release_output()
        await asyncio.sleep(0.5)
        assert events == []  # still one hold
        terminal.release_output()
        terminal.release_output()  # nothing held: a no-op
        assert await asyncio.wait_for(terminal.proc.wait(), 60.0) == 0
        assert output(events).endswith(f"{lines - 1}\r\n{lines}\r\n".encode())
        assert events[-1] == ("end", b"")
        terminal.close()
        assert isinstance(terminal, VmTerminal) and terminal.join(5.0)

    run(scenario, timeout=90.0)


def test_input_a_program_does_not_read_is_dropped_not_a_hang(
    processes: GuestProcesses,  # noqa: F811
    tmp_path: Path,
) -> None:
    """In raw mode a full terminal does not discard input by itself: the guest drops
    it, so the agent's request, later sizes and the program's exit do not wait."""
    script = "stty raw -echo; sleep 1; stty size; exit 5"

    async def scenario() -> None:
        terminal = open_vm_terminal(processes, ["sh", "-c", script], ENV, str(tmp_path), 80, 24)
        events = record(terminal)
        await asyncio.sleep(0.3)  # raw mode is on
        for _ in range(8):
            terminal.write(b"k" * 30_000)
        terminal.resize(70, 21)
        assert await asyncio.wait_for(terminal.proc.wait(), 10.0) == 5
        assert b"21 70" in output(events)
        terminal.close()
        assert isinstance(terminal, VmTerminal) and terminal.join(5.0)

    run(scenario)


def test_close_ends_the_terminal_and_its_process_as_lost(
    processes: GuestProcesses,  # noqa: F811
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        # Ends by itself soon: a closed terminal's program keeps running in the guest.
        terminal = open_vm_terminal(processes, ["sleep", "2"], ENV, str(tmp_path), 80, 24)
        events = record(terminal)
        terminal.close()
        assert await asyncio.wait_for(terminal.proc.wait(), 5.0) == -1
        assert terminal.proc.describe_exit() == "was lost (closed)"
        assert events == [("end", b"")]
        terminal.write(b"x")
        terminal.resize(10, 10)
        terminal.close()  # twice is fine
        await terminal.proc.send_signal(signal.SIGKILL)  # ended: a no-op
        assert isinstance(terminal, VmTerminal) and terminal.join(5.0)

    run(scenario)


def test_input_for_an_agent_that_does_not_answer_is_bounded() -> None:
    """An agent that answers the start and nothing after it: input waits for one
    request at a time, at most INPUT_LIMIT bytes of it, and the rest is dropped;
    the loop never waits."""
    host, guest = socket.socketpair()
    received: list[int] = []
    sizes: list[tuple[int, int]] = []

    def answer_only_the_start() -> None:
        with guest.makefile("rb") as lines:
            for line in lines:
                request = json.loads(line)
                if request.get("op") == "start":
                    answer = {"id": request["id"], "ok": True, "proc": 1, "pid": 42}
                    guest.sendall(json.dumps(answer).encode() + b"\n")
                elif request.get("op") == "stdin":
                    received.append(len(base64.b64decode(request["data"])))
                elif request.get("op") == "resize":
                    sizes.append((request["rows"], request["cols"]))

    thread = threading.Thread(target=answer_only_the_start, daemon=True)
    thread.start()
    channel = AgentChannel(host)
    agent = GuestProcesses(channel, timeout=0.5)

    async def scenario() -> None:
        terminal = open_vm_terminal(agent, ["x"], {}, "/", 80, 24)
        started = time.monotonic()
        for _ in range(10):
            terminal.write(b"k" * 40_000)
            terminal.resize(81, 25)
        assert time.monotonic() - started < 0.2
        await until(lambda: sum(received) >= INPUT_LIMIT, timeout=10.0)
        await asyncio.sleep(1.0)  # the worker has nothing more to send
        # 40 000 bytes, then what fitted beside them; the sizes do not count.
        assert sum(received) == INPUT_LIMIT
        assert sizes == [(25, 81)] * 2  # after each piece of input; later ones merged
        terminal.close()
        assert await asyncio.wait_for(terminal.proc.wait(), 5.0) == -1
        assert isinstance(terminal, VmTerminal) and terminal.join(5.0)

    try:
        run(scenario)
    finally:
        channel.close()
        guest.close()
        thread.join(10.0)
