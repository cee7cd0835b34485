"""Durable commands and keepalive, end to end against wrenn.local over a real socket.

A durable command's output is spooled inside the capsule, so it outlives the client
that started it. The tests synchronise on the data itself (a command that waits for a
gate file before its second half), never on sleeps; every loop is bounded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from wrenn import AsyncCapsule, WrennNotFoundError
from wrenn._compat import asleep
from wrenn._durable import DurableStdoutEvent, StreamDroppedEvent
from wrenn._process import StreamExitEvent, StreamStderrEvent
from wrenn.local import LocalServer
from wrenn.models import Status

pytestmark = pytest.mark.anyio

PART1 = bytes(range(256)) * 40  # 10 KiB, not UTF-8: the bytes must come back exactly
PART2 = b"second half\n" * 500
# Writes PART1, waits (bounded) for the gate file, writes PART2 and some stderr, exits 5.
PROGRAM = """
import os, sys, time
out = sys.stdout.buffer
out.write(bytes(range(256)) * 40); out.flush()
for _ in range(1200):
    if os.path.exists(sys.argv[1]):
        break
    time.sleep(0.05)
out.write(b"second half\\n" * 500); out.flush()
sys.stderr.write("done\\n")
sys.exit(5)
"""


@pytest.fixture(scope="module")
def local_server() -> Iterator[LocalServer]:
    with LocalServer() as server:
        yield server


def keys(server: LocalServer) -> dict[str, str]:
    return {"api_key": server.api_key, "base_url": server.base_url}


async def read_stdout(stream: object, limit: int, until: int | None = None) -> bytes:
    """Stdout bytes of a durable stream, until ``until`` bytes or the exit (bounded)."""
    data = b""
    for _ in range(limit):
        event = await stream.__anext__()  # type: ignore[attr-defined]
        if isinstance(event, DurableStdoutEvent):
            assert event.offset == stream.stdout_offset - len(event.raw)  # type: ignore[attr-defined]
            data += event.raw
            if until is not None and len(data) >= until:
                return data
        elif isinstance(event, StreamExitEvent):
            return data
    raise AssertionError(f"no end within {limit} events")


async def test_a_durable_command_survives_its_client_and_resumes_without_loss_or_repeat(
    local_server: LocalServer,
) -> None:
    first = await AsyncCapsule.create(**keys(local_server))
    capsule_id = first.capsule_id
    gate = "/tmp/gate-" + capsule_id[-6:]
    try:
        handle = await first.commands.start_durable(["python3", "-c", PROGRAM, gate], tag="job")
        assert handle.tag == "job"
        async with first.commands.attach("job") as stream:
            seen = await read_stdout(stream, 2000, until=len(PART1))
            offset = stream.stdout_offset
        assert seen == PART1 and offset == len(PART1)  # the whole first half, mid-output
        await first.aclose()  # the client goes away; the command keeps running

        second = await AsyncCapsule.connect(capsule_id, **keys(local_server))
        async with second:
            await second.files.write(gate, b"go")
            async with second.commands.attach("job", from_offset=offset) as resumed:
                rest = await read_stdout(resumed, 2000)
            assert rest == PART2  # exactly what was missed, then the rest: no byte twice
            assert resumed.exit_code == 5
            durable = second.commands.durable("job")
            assert await durable.exit_code() == 5  # kept in the capsule
            result = await durable.wait(timeout=60)
            assert result.exit_code == 5 and result.stderr == "done\n"
            assert result.stdout.encode("utf-8", "replace") != b""  # text view of the bytes
            await durable.remove()
            with pytest.raises(WrennNotFoundError):
                await second.commands.durable("job").wait(timeout=10)
    finally:
        await AsyncCapsule.destroy(capsule_id, **keys(local_server))


async def test_attach_from_any_offset_returns_exactly_the_bytes_from_there(
    local_server: LocalServer,
) -> None:
    async with await AsyncCapsule.create(**keys(local_server)) as capsule:
        gate = "/tmp/gate-now"
        await capsule.files.write(gate, b"")
        result = await capsule.commands.run(
            ["python3", "-c", PROGRAM, gate], durable=True, tag="offsets", timeout=60
        )
        assert result.exit_code == 5 and result.stderr == "done\n"
        whole = PART1 + PART2
        for offset in (0, 1, 255, len(PART1), len(whole) - 1, len(whole), len(whole) + 10):
            async with capsule.commands.attach("offsets", from_offset=offset) as stream:
                assert await read_stdout(stream, 2000) == whole[offset:]
        async with capsule.commands.attach("offsets", len(whole), stderr_offset=2) as stream:
            events = [event async for event in stream]
        assert [(type(e), getattr(e, "raw", None)) for e in events] == [
            (type(events[0]), b"ne\n"),
            (StreamExitEvent, None),
        ]
        assert isinstance(events[0], StreamStderrEvent) and events[0].data == "ne\n"


async def test_the_spool_keeps_its_budget_and_reports_what_it_dropped(
    local_server: LocalServer,
) -> None:
    budget = 16 * 1024
    total = 200 * 1024
    async with await AsyncCapsule.create(**keys(local_server)) as capsule:
        handle = await capsule.commands.start_durable(
            ["python3", "-c", f"import sys; sys.stdout.write('abcdefgh' * {total // 8})"],
            budget=budget,
        )
        assert (await handle.wait(timeout=60)).exit_code == 0
        async with handle.attach() as stream:
            events = [event async for event in stream]
        dropped = events[0]
        assert isinstance(dropped, StreamDroppedEvent)
        assert dropped.stream == "stdout" and dropped.offset == 0
        kept = b"".join(e.raw for e in events if isinstance(e, DurableStdoutEvent))
        assert 0 < len(kept) <= budget + budget // 8  # within the budget, plus one read
        assert dropped.dropped + len(kept) == total  # every byte is kept or counted
        assert kept == (b"abcdefgh" * (total // 8))[dropped.dropped :]
        assert stream.stdout_dropped == dropped.dropped
        recorded = await capsule.files.read(f"{handle.spool_dir}/o.dropped")
        assert int(recorded) == dropped.dropped


async def test_durable_commands_take_argv_literally_and_keep_a_killed_status(
    local_server: LocalServer,
) -> None:
    async with await AsyncCapsule.create(**keys(local_server)) as capsule:
        hostile = "$(touch /tmp/pwned) `touch /tmp/pwned` 'quote\" ; exit 9"
        result = await capsule.commands.run(["printf", "%s", hostile], durable=True)
        assert result.stdout == hostile and result.exit_code == 0
        assert not await capsule.files.exists("/tmp/pwned")
        gated = await capsule.commands.run(
            ["python3", "-c", PROGRAM, "/nonexistent"], background=True, durable=True
        )
        async with gated.attach() as stream:
            assert await read_stdout(stream, 2000, until=len(PART1)) == PART1
        await gated.kill()
        assert (await gated.wait(timeout=30)).exit_code == 137
        assert await gated.exit_code() == 137
        with pytest.raises(WrennNotFoundError):
            async with capsule.commands.attach("no-such-tag") as missing:
                await missing.__anext__()
        with pytest.raises(ValueError, match="tag"):
            capsule.commands.attach("../etc")


# Says "ready", then waits (bounded) for a gate file and only then writes a marker file:
# a command still alive after its kill would write the marker once the gate is there.
MARKER_PROGRAM = """
import os, sys, time
print("ready", flush=True)
for _ in range(1200):
    if os.path.exists(sys.argv[1]):
        open(sys.argv[2], "w").close()
        break
    time.sleep(0.05)
"""


@pytest.mark.parametrize(("signal", "status"), [("SIGKILL", 137), ("SIGTERM", 143)])
async def test_killing_a_durable_commands_tag_ends_the_command_not_only_its_wrapper(
    local_server: LocalServer, signal: str, status: int
) -> None:
    async with await AsyncCapsule.create(**keys(local_server)) as capsule:
        gate, marker = "/tmp/kill-gate", "/tmp/kill-marker"
        handle = await capsule.commands.start_durable(
            ["python3", "-c", MARKER_PROGRAM, gate, marker], tag="victim"
        )
        async with handle.attach() as stream:
            assert await read_stdout(stream, 2000, until=len(b"ready\n")) == b"ready\n"
        pid = (await capsule.files.read(f"{handle.spool_dir}/pid")).strip()

        await capsule.commands.kill("victim", signal=signal)  # the tag, as for any command

        result = await handle.wait(timeout=30)
        assert result.exit_code == status and await handle.exit_code() == status
        await capsule.files.write(gate, b"go")
        alive = await capsule.commands.run(["/bin/sh", "-c", 'kill -0 "$1"', "sh", pid])
        assert alive.exit_code != 0  # the command's pid is gone
        assert not any(p.tag == "victim" for p in await capsule.commands.list())
        assert not await capsule.files.exists(marker)


# --- keepalive -----------------------------------------------------------------------

TTL = 2


@pytest.fixture(scope="module")
def quick_pause_server() -> Iterator[LocalServer]:
    with LocalServer(min_timeout_sec=1, ttl_interval=0.2) as server:
        yield server


async def slow_chunks() -> AsyncIterator[bytes]:
    for _ in range(8):  # 4 s of upload: twice the TTL, with no exec and no ping
        yield b"y" * 1024
        await asleep(0.5)


async def test_keepalive_keeps_a_short_ttl_capsule_running_through_a_long_transfer(
    quick_pause_server: LocalServer,
) -> None:
    async with await AsyncCapsule.create(timeout=TTL, **keys(quick_pause_server)) as capsule:
        await capsule.files.upload_stream("/root/big.bin", slow_chunks(), keepalive=True)
        assert (await capsule.get_info()).status is Status.running
        received = b""
        async with capsule.files.download_stream("/root/big.bin", keepalive=True) as download:
            async for chunk in download:
                received += chunk
                await asleep(0.5)  # a slow consumer, as long as the upload
        assert received == b"y" * 8 * 1024
        async with capsule.pty(keepalive=True) as terminal:
            assert terminal.pid is not None or terminal.tag is not None
        assert (await capsule.get_info()).status is Status.running
        with pytest.raises(RuntimeError, match="context manager"):
            async for _ in capsule.files.download_stream("/root/big.bin", keepalive=True):
                pass
