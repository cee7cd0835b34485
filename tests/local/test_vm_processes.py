"""Processes through the agent without QEMU: the real guest agent over a socketpair
(its processes run on this host), and a hostile agent played by the test."""

from __future__ import annotations

import base64
import hashlib
import json
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from wrenn.local._vm import guest_agent, guest_processes
from wrenn.local._vm._agent import AgentChannel, AgentError
from wrenn.local._vm._guest_processes import (
    CHUNK_COST,
    CREDIT_WINDOW,
    MAX_CHUNK_BYTES,
    MAX_PROCESSES,
    GuestProcess,
    GuestProcesses,
)


@pytest.fixture
def processes() -> Iterator[GuestProcesses]:
    host, guest = socket.socketpair()
    agent = guest_agent.Agent(guest.fileno())
    thread = threading.Thread(target=agent.serve, kwargs={"return_on_eof": True}, daemon=True)
    thread.start()
    channel = AgentChannel(host)
    try:
        yield GuestProcesses(channel, timeout=10.0)
    finally:
        host.shutdown(socket.SHUT_WR)
        thread.join(timeout=10.0)
        channel.close()
        guest.close()


def read_all(process: GuestProcess, timeout: float = 20.0) -> dict[str, bytes]:
    """Every chunk until the exit, joined per stream."""
    deadline = time.monotonic() + timeout
    out: dict[str, bytearray] = {}
    while (chunk := process.read(deadline - time.monotonic())) is not None:
        out.setdefault(chunk.stream, bytearray()).extend(chunk.data)
    return {stream: bytes(data) for stream, data in out.items()}


def read_until(process: GuestProcess, needle: bytes, timeout: float = 10.0) -> bytes:
    deadline = time.monotonic() + timeout
    seen = bytearray()
    while needle not in seen:
        chunk = process.read(deadline - time.monotonic())
        assert chunk is not None, f"exited before {needle!r}: {bytes(seen)!r}"
        seen += chunk.data
    return bytes(seen)


def test_two_processes_at_once_with_their_own_output(processes: GuestProcesses) -> None:
    script = 'for i in 1 2 3; do echo "$0$i"; echo "e$0$i" >&2; sleep 0.05; done; exit 3'
    first = processes.start(["sh", "-c", script, "a"], cwd="/tmp")
    second = processes.start(["sh", "-c", script, "b"], env={"X": "1"}, cwd="/tmp")
    assert first.id != second.id
    results = {}
    readers = [
        threading.Thread(target=lambda p=p: results.__setitem__(p.id, read_all(p)))
        for p in (first, second)
    ]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(timeout=20.0)
    assert results[first.id] == {"stdout": b"a1\na2\na3\n", "stderr": b"ea1\nea2\nea3\n"}
    assert results[second.id] == {"stdout": b"b1\nb2\nb3\n", "stderr": b"eb1\neb2\neb3\n"}
    assert first.wait(5.0) == second.wait(5.0) == 3


def test_cat_echoes_stdin_until_it_is_closed(processes: GuestProcesses) -> None:
    cat = processes.start(["cat"], cwd="/tmp")
    cat.write_stdin(b"hello\n")
    assert read_until(cat, b"hello\n") == b"hello\n"
    cat.write_stdin(b"x" * 300_000)
    assert len(read_until(cat, b"x" * 300_000)) == 300_000
    cat.close_stdin()
    assert cat.read(10.0) is None and cat.wait(5.0) == 0
    with pytest.raises(AgentError, match="no running process"):
        cat.write_stdin(b"late")


def test_a_signal_ends_a_sleep_with_a_negative_exit(processes: GuestProcesses) -> None:
    sleeper = processes.start(["sleep", "100"], cwd="/tmp")
    with pytest.raises(TimeoutError):
        sleeper.wait(0.2)
    sleeper.signal(signal.SIGTERM)
    assert sleeper.wait(10.0) == -signal.SIGTERM
    assert sleeper.read(1.0) is None


def test_a_pty_sees_its_resize(processes: GuestProcesses) -> None:
    shell = processes.start(
        ["sh", "-c", "stty size; read line; stty size"], cwd="/tmp", pty=True, rows=24, cols=80
    )
    assert b"24 80" in read_until(shell, b"24 80")
    shell.resize(40, 120)
    shell.write_stdin(b"\n")
    assert b"40 120" in read_until(shell, b"40 120")
    assert shell.wait(10.0) == 0
    assert {chunk_stream for chunk_stream in read_all(shell)} <= {"pty"}


def test_a_host_that_does_not_read_stops_the_guest(processes: GuestProcesses) -> None:
    size = 8 * 1024 * 1024
    flood = processes.start(["head", "-c", str(size), "/dev/urandom"], cwd="/tmp")
    time.sleep(1.0)  # not reading: the guest may send one window, no more
    assert flood._in_flight <= CREDIT_WINDOW
    assert flood.exit_code is None  # blocked on its full pipe, not finished
    digest, total, chunks = hashlib.sha256(), 0, 0
    while (chunk := flood.read(20.0)) is not None:
        assert len(chunk.data) <= MAX_CHUNK_BYTES and flood._in_flight <= CREDIT_WINDOW
        digest.update(chunk.data)
        total += len(chunk.data)
        chunks += 1
    assert total == size and chunks >= size // MAX_CHUNK_BYTES
    assert flood.wait(5.0) == 0


def test_tiny_chunks_are_bounded_by_their_cost_too(processes: GuestProcesses) -> None:
    # One byte per write, slowly enough that each is its own event: 3000 of them
    # cost more than a window, so the guest stops after about 2,040.
    code = "import os, time\nfor _ in range(3000):\n    os.write(1, b'x'); time.sleep(0.0005)"
    dribble = processes.start([sys.executable, "-c", code], cwd="/tmp")
    time.sleep(3.0)  # not reading
    assert dribble._in_flight <= CREDIT_WINDOW
    assert len(dribble._queue) <= CREDIT_WINDOW // (1 + CHUNK_COST)
    assert dribble.exit_code is None  # blocked for want of credit
    assert read_all(dribble) == {"stdout": b"x" * 3000}
    assert dribble.wait(5.0) == 0


def test_at_most_max_processes_at_once(processes: GuestProcesses) -> None:
    sleepers = [processes.start(["sleep", "100"], cwd="/tmp") for _ in range(MAX_PROCESSES)]
    try:
        with pytest.raises(AgentError, match=f"at most {MAX_PROCESSES}"):
            processes.start(["true"], cwd="/tmp")
        # The guest refuses too, whatever the host asks.
        with pytest.raises(AgentError, match="too many processes"):
            processes.channel.request({"op": "start", "argv": ["true"]}, timeout=5.0)
    finally:
        for sleeper in sleepers:
            sleeper.signal(signal.SIGKILL)
    assert all(sleeper.wait(10.0) == -signal.SIGKILL for sleeper in sleepers)
    assert processes.start(["true"], cwd="/tmp").wait(10.0) == 0


def test_a_missing_program_is_an_agent_error(processes: GuestProcesses) -> None:
    with pytest.raises(AgentError, match="FileNotFoundError"):
        processes.start(["/no/such/program"])
    with pytest.raises(ValueError, match="argv"):
        processes.start([])


# -- a hostile agent ------------------------------------------------------------------

Request = dict[str, object]


class FakeAgent:
    """Answers each ``start`` with a new process (1, 2, ...), then sends what
    ``after_start`` makes; every other request gets an empty answer."""

    def __init__(self, after_start: Callable[[socket.socket], None]) -> None:
        self.host, self.guest = socket.socketpair()
        self.acks: list[int] = []
        self._started = 0
        self._after_start = after_start
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self.processes = GuestProcesses(AgentChannel(self.host), timeout=5.0)

    def _serve(self) -> None:
        try:
            with self.guest.makefile("rb") as lines:
                for line in lines:
                    request = json.loads(line)
                    if request.get("op") == "ack":
                        self.acks.append(request["bytes"])
                        continue
                    answer = {"id": request["id"], "ok": True}
                    if request.get("op") == "start":
                        self._started += 1
                        answer.update(proc=self._started, pid=99)
                    self.guest.sendall(json.dumps(answer).encode() + b"\n")
                    if request.get("op") == "start":
                        self._after_start(self.guest)
        except OSError:
            pass

    def close(self) -> None:
        self.processes.channel.close()
        self.guest.close()
        self._thread.join(timeout=10.0)


@pytest.fixture
def fake() -> Iterator[Callable[[Callable[[socket.socket], None]], FakeAgent]]:
    agents: list[FakeAgent] = []

    def start(after_start: Callable[[socket.socket], None]) -> FakeAgent:
        agents.append(FakeAgent(after_start))
        return agents[-1]

    yield start
    for agent in agents:
        agent.close()


def _event(kind: str, proc: object = 1, **fields: object) -> bytes:
    return json.dumps({"event": kind, "proc": proc, **fields}).encode() + b"\n"


def _output(data: bytes, proc: object = 1, stream: str = "stdout") -> bytes:
    return _event("output", proc, stream=stream, data=base64.b64encode(data).decode())


def test_events_for_unknown_processes_are_dropped(fake: Callable[..., FakeAgent]) -> None:
    def strangers(guest: socket.socket) -> None:
        guest.sendall(_output(b"x" * 1000, proc=7) * 1000 + _event("exit", "1", exit_code=0))
        guest.sendall(_output(b"mine") + _event("exit", exit_code=0))

    agent = fake(strangers)
    process = agent.processes.start(["x"])
    assert read_all(process) == {"stdout": b"mine"}
    assert agent.processes.dropped_events == 1001
    assert process.wait(1.0) == 0


def test_a_chunk_over_the_cap_fails_the_process(fake: Callable[..., FakeAgent]) -> None:
    agent = fake(lambda guest: guest.sendall(_output(b"y" * (MAX_CHUNK_BYTES + 1))))
    process = agent.processes.start(["x"])
    with pytest.raises(AgentError, match=f"over {MAX_CHUNK_BYTES} bytes"):
        process.read(5.0)
    with pytest.raises(AgentError, match="over"):
        process.wait(1.0)


def test_a_flood_past_the_credit_fails_the_process_not_the_host(
    fake: Callable[..., FakeAgent],
) -> None:
    def flood(guest: socket.socket) -> None:
        for _ in range(10_000):  # 20 MiB in small chunks, ignoring the credit
            guest.sendall(_output(b"z" * 2048))

    agent = fake(flood)
    process = agent.processes.start(["x"])
    deadline = time.monotonic() + 10.0
    while process._error is None and time.monotonic() < deadline:
        assert process._in_flight <= CREDIT_WINDOW + 2048 + CHUNK_COST
        time.sleep(0.001)
    assert len(process._queue) == 0  # the queue was dropped
    with pytest.raises(AgentError, match="past its credit"):
        process.read(1.0)
    assert agent.processes.channel.broken is None  # only that process failed


def test_answers_and_events_interleave(fake: Callable[..., FakeAgent]) -> None:
    chatter = threading.Event()

    def chatty(guest: socket.socket) -> None:
        for index in range(200):
            guest.sendall(_output(f"{index}\n".encode()))
        chatter.set()

    agent = fake(chatty)
    process = agent.processes.start(["x"])
    for _ in range(20):  # requests answered between the events
        process.signal(signal.SIGCONT)
    assert chatter.wait(5.0)
    lines = read_until(process, b"199\n").splitlines()
    assert lines == [str(index).encode() for index in range(200)]
    deadline = time.monotonic() + 5.0
    while not agent.acks and time.monotonic() < deadline:
        time.sleep(0.01)  # the queue ran empty: what was read is acknowledged
    assert 0 < sum(agent.acks) <= 200 * (4 + CHUNK_COST)


def test_a_broken_channel_fails_every_waiting_process(fake: Callable[..., FakeAgent]) -> None:
    agent = fake(lambda guest: None)
    waiting = [agent.processes.start(["x"]) for _ in range(3)]
    errors: list[str] = []

    def wait_on(call: Callable[[float], object]) -> None:
        try:
            call(60.0)
        except AgentError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=wait_on, args=(p.read,)) for p in waiting]
    threads += [threading.Thread(target=wait_on, args=(p.wait,)) for p in waiting]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    agent.guest.shutdown(socket.SHUT_RDWR)
    for thread in threads:
        thread.join(timeout=5.0)
    assert time.monotonic() - started < 2.0
    assert len(errors) == 6 and all("broken" in error for error in errors)


def test_the_two_ends_agree_on_the_caps() -> None:
    assert guest_processes.MAX_PROCESSES == MAX_PROCESSES
    assert guest_processes.MAX_EVENT_CHUNK == MAX_CHUNK_BYTES
    assert guest_processes.CREDIT_WINDOW == CREDIT_WINDOW
    assert guest_processes.CHUNK_COST == CHUNK_COST
