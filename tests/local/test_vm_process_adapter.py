"""VmProcess drives a GuestProcess from an asyncio loop, without QEMU: the real guest
agent over a socketpair (its processes run on this host), or a fake agent."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest

from wrenn.local._runtime import PROCESS_INTERFACE, CapsuleProcess
from wrenn.local._vm._agent import AgentChannel
from wrenn.local._vm._guest_processes import CREDIT_WINDOW, GuestProcesses
from wrenn.local._vm._process import POSTED_LIMIT, VmProcess, start_vm_process

from .test_vm_processes import FakeAgent, _output, fake, processes  # noqa: F401

T = TypeVar("T")
Events = list[tuple[str, bytes]]


def run(scenario: Callable[[], Awaitable[T]], timeout: float = 60.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(scenario(), timeout)

    return asyncio.run(bounded())


def pumps() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("wrenn-vm-pump-")]


@pytest.fixture(autouse=True)
def no_pump_is_left() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 10.0
    for thread in pumps():
        thread.join(max(0.0, deadline - time.monotonic()))
    assert pumps() == []


def record(proc: VmProcess) -> tuple[Events, set[int]]:
    """Every listener call, and the threads they came on."""
    events: Events = []
    threads: set[int] = set()

    def listener(kind: str, data: bytes) -> None:
        events.append((kind, data))
        threads.add(threading.get_ident())

    proc.listen(listener)
    return events, threads


def joined(events: Events) -> Events:
    """Consecutive chunks of one stream joined (a stream may split or merge writes)."""
    out: Events = []
    for kind, data in events:
        if out and out[-1][0] == kind and kind != "exit":
            out[-1] = (kind, out[-1][1] + data)
        else:
            out.append((kind, data))
    return out


def test_vm_process_implements_the_whole_interface() -> None:
    assert VmProcess.__abstractmethods__ == frozenset()
    declared = set(dir(VmProcess)) | set(CapsuleProcess.__annotations__)
    assert sorted(PROCESS_INTERFACE - declared) == []


def test_output_in_order_on_the_loop_then_one_exit(processes: GuestProcesses) -> None:  # noqa: F811
    script = "echo a1; sleep 0.1; echo e1 >&2; sleep 0.1; echo a2; sleep 0.1; exit 3"

    async def scenario() -> None:
        proc = start_vm_process(processes, ["sh", "-c", script], {}, "/tmp")
        events, threads = record(proc)
        assert await proc.wait() == 3
        assert proc.exit_code == 3 and proc.death_signal is None
        assert proc.describe_exit() == "exited with status 3"
        assert joined(events) == [
            ("stdout", b"a1\n"),
            ("stderr", b"e1\n"),
            ("stdout", b"a2\n"),
            ("exit", b""),
        ]
        assert threads == {threading.get_ident()}  # the loop's thread only
        assert proc.join(5.0)

    run(scenario)


def test_a_signal_death_is_minus_one_with_the_signal(processes: GuestProcesses) -> None:  # noqa: F811
    async def scenario() -> None:
        proc = start_vm_process(processes, ["sh", "-c", "echo $$; exec sleep 100"], {}, "/tmp")
        events, _ = record(proc)
        while not events:
            await asyncio.sleep(0.01)
        assert await proc.resolve() == int(events[0][1])  # the pid it has in the guest
        assert not proc.exited.is_set()
        await proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == -1
        assert proc.death_signal == signal.SIGTERM
        assert proc.describe_exit() == "was killed by SIGTERM"
        await proc.send_signal(signal.SIGKILL)  # ended: nothing is sent, no error
        assert events[-1] == ("exit", b"") and [e for e in events if e[0] == "exit"] == [
            ("exit", b"")
        ]

    run(scenario)


def test_terminate_ends_a_process_that_ignores_sigterm(processes: GuestProcesses) -> None:  # noqa: F811
    async def scenario() -> None:
        script = "trap '' TERM; echo ready; while :; do sleep 0.05; done"
        proc = start_vm_process(processes, ["sh", "-c", script], {}, "/tmp")
        events, _ = record(proc)
        while not events:
            await asyncio.sleep(0.01)
        await proc.terminate(grace=0.3)
        assert proc.exited.is_set() and proc.death_signal == signal.SIGKILL

    run(scenario)


def test_held_output_blocks_the_guest_process_until_released(processes: GuestProcesses) -> None:  # noqa: F811
    size = 8 * 1024 * 1024

    async def scenario() -> None:
        # It writes only after the hold is surely in place.
        script = f"sleep 0.3; exec head -c {size} /dev/zero"
        proc = start_vm_process(processes, ["sh", "-c", script], {}, "/tmp")
        proc.hold_output()
        proc.hold_output()  # counted: one release is not enough
        events, _ = record(proc)
        await asyncio.sleep(1.0)
        proc.release_output()
        await asyncio.sleep(1.0)
        guest = proc._guest
        assert events == []  # nothing delivered while held
        assert guest.exit_code is None and not proc.exited.is_set()  # blocked, not done
        assert guest._in_flight <= CREDIT_WINDOW and proc._posted <= POSTED_LIMIT
        assert proc._posted == 0 and guest._queue  # the pump read nothing
        proc.release_output()
        assert await asyncio.wait_for(proc.wait(), 30.0) == 0
        assert sum(len(data) for kind, data in events if kind == "stdout") == size
        assert events[-1] == ("exit", b"")

    run(scenario)


def test_a_hold_taken_in_a_listener_stops_the_next_chunk(processes: GuestProcesses) -> None:  # noqa: F811
    # Slow output, so the pump is never ahead of the loop: after the hold it takes
    # at most the one line it was reading, and the rest waits in the guest's queue.
    script = "for i in $(seq 10 49); do echo line$i; sleep 0.05; done"
    expected = b"".join(b"line%d\n" % i for i in range(10, 50))

    async def scenario() -> None:
        proc = start_vm_process(processes, ["sh", "-c", script], {}, "/tmp")
        chunks: list[bytes] = []

        def listener(kind: str, data: bytes) -> None:
            if kind == "stdout":
                chunks.append(data)
                if len(chunks) == 1:
                    proc.hold_output()

        proc.listen(listener)
        await asyncio.sleep(1.0)
        assert len(chunks) == 1 and not proc.exited.is_set()
        assert proc._posted <= len(b"line10\n")  # no reads while held
        assert len(proc._guest._queue) >= 5
        proc.release_output()
        assert await asyncio.wait_for(proc.wait(), 30.0) == 0
        assert b"".join(chunks) == expected

    run(scenario)


def test_close_ends_the_pump_and_the_process_as_failed(processes: GuestProcesses) -> None:  # noqa: F811
    async def scenario() -> None:
        proc = start_vm_process(processes, ["sleep", "3"], {}, "/tmp")
        events, _ = record(proc)
        await asyncio.sleep(0.3)
        started = time.monotonic()
        proc.close()
        assert await asyncio.wait_for(proc.wait(), 5.0) == -1
        assert time.monotonic() - started < 2.0
        assert proc.failure == "closed" and proc.death_signal is None
        assert proc.describe_exit() == "was lost (closed)"
        assert events == [("exit", b"")]
        assert proc.join(5.0)
        proc.close()  # twice is fine
        await proc.send_signal(signal.SIGTERM)  # a no-op once ended

    run(scenario)


def test_a_bad_start_is_an_oserror(processes: GuestProcesses) -> None:  # noqa: F811
    async def scenario() -> None:
        with pytest.raises(OSError, match="FileNotFoundError"):
            start_vm_process(processes, ["/no/such/program"], {}, "/tmp")

    run(scenario)


def test_a_broken_channel_ends_with_the_output_then_exit(
    fake: Callable[[Callable[[socket.socket], None]], FakeAgent],  # noqa: F811
) -> None:
    async def scenario() -> None:
        agent = fake(lambda guest: guest.sendall(_output(b"mine")))
        proc = VmProcess(agent.processes.start(["x"]))
        events, _ = record(proc)
        while not events:
            await asyncio.sleep(0.01)
        proc.hold_output()  # a failure delivers what was read, holds or not
        await asyncio.sleep(0.5)  # the pump is waiting for the release, not reading
        agent.guest.shutdown(socket.SHUT_RDWR)
        assert await asyncio.wait_for(proc.wait(), 5.0) == -1
        assert proc.failure is not None and "broken" in proc.failure
        assert events == [("stdout", b"mine"), ("exit", b"")]
        await proc.send_signal(signal.SIGTERM)  # ended: no request on a dead channel
        assert proc.join(5.0)

    run(scenario)


def test_an_unanswered_signal_ends_the_process_as_failed() -> None:
    """An agent that answers the start and nothing after it: the signal's request
    times out, and the process is lost rather than waited on forever."""
    host, guest = socket.socketpair()

    def answer_only_the_start() -> None:
        with guest.makefile("rb") as lines:
            for line in lines:
                request = json.loads(line)
                if request.get("op") == "start":
                    answer = {"id": request["id"], "ok": True, "proc": 1, "pid": 42}
                    guest.sendall(json.dumps(answer).encode() + b"\n")

    thread = threading.Thread(target=answer_only_the_start, daemon=True)
    thread.start()
    channel = AgentChannel(host)
    processes = GuestProcesses(channel, timeout=1.5)  # noqa: F811

    async def scenario() -> None:
        proc = start_vm_process(processes, ["x"], {}, "/")
        assert await proc.resolve() == 42
        await proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert await asyncio.wait_for(proc.wait(), 5.0) == -1
        # Ended at once, not after the pump's detach request times out too.
        assert time.monotonic() - started < 1.0
        assert proc.failure is not None and "no answer" in proc.failure
        assert proc.join(5.0)

    try:
        run(scenario)
    finally:
        channel.close()
        guest.close()
        thread.join(10.0)
