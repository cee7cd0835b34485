"""Capsule, commands, files and terminals end to end against wrenn.local over a real socket."""

from __future__ import annotations

import time

import pytest

from wrenn import (
    AsyncCapsule,
    StreamErrorEvent,
    StreamExitEvent,
    StreamStartEvent,
    StreamStdoutEvent,
    WrennAgentError,
    WrennCommandTimeoutError,
    WrennConnectionError,
)
from wrenn.local import LocalServer
from wrenn.models import FileType, Status

pytestmark = pytest.mark.anyio


async def new_capsule(server: LocalServer) -> AsyncCapsule:
    return await AsyncCapsule.create(
        template="minimal", api_key=server.api_key, base_url=server.base_url
    )


async def test_capsule_lifecycle_and_dual_methods(local_server: LocalServer) -> None:
    keys = {"api_key": local_server.api_key, "base_url": local_server.base_url}
    async with await new_capsule(local_server) as capsule:
        assert capsule.info is not None and capsule.info.status is Status.running
        assert await capsule.is_running()
        assert (await capsule.pause()).status is Status.paused
        assert (await AsyncCapsule.get_info(capsule.capsule_id, **keys)).status is Status.paused
        assert (await AsyncCapsule.resume(capsule.capsule_id, **keys)).status is Status.running
        await capsule.ping()
        await capsule.wait_ready(timeout=10)
        assert capsule.capsule_id in [c.id for c in await AsyncCapsule.list(**keys)]
        assert capsule.get_url(8888).startswith(f"http://8888-{capsule.capsule_id}.")
        attached = await AsyncCapsule.connect(capsule.capsule_id, **keys)
        assert (await attached.commands.run("echo attached")).stdout == "attached\n"
        await attached.aclose()
        capsule_id = capsule.capsule_id
    # leaving the block destroyed it
    assert (await AsyncCapsule.get_info(capsule_id, **keys)).status is Status.stopped


async def test_connect_resumes_a_paused_capsule(local_server: LocalServer) -> None:
    keys = {"api_key": local_server.api_key, "base_url": local_server.base_url}
    capsule = await new_capsule(local_server)
    try:
        await capsule.pause()
        attached = await AsyncCapsule.connect(capsule.capsule_id, **keys)
        assert attached.info is not None and attached.info.status is Status.running
        await attached.aclose()
    finally:
        await capsule.destroy()
        await capsule.aclose()


async def test_run_foreground_shell_and_argv(local_server: LocalServer) -> None:
    async with await new_capsule(local_server) as capsule:
        result = await capsule.commands.run("echo out; echo err >&2; exit 3")
        assert (result.stdout, result.stderr, result.exit_code) == ("out\n", "err\n", 3)
        argv = await capsule.commands.run(["printf", "%s|", "a b", "$HOME", "'q'"])
        assert argv.stdout == "a b|$HOME|'q'|"
        placed = await capsule.commands.run(
            "pwd; echo $GREETING", cwd="/tmp", envs={"GREETING": "hi there"}
        )
        assert placed.stdout == "/tmp\nhi there\n"
        argv_placed = await capsule.commands.run(
            ["sh", "-c", "pwd; echo $X"], cwd="/workspace", envs={"X": "1"}
        )
        assert argv_placed.stdout == "/workspace\n1\n"


async def test_timeout_stops_the_command_and_keeps_its_output(local_server: LocalServer) -> None:
    async with await new_capsule(local_server) as capsule:
        started = time.monotonic()
        with pytest.raises(WrennCommandTimeoutError) as info:
            await capsule.commands.run(
                "echo before; touch /tmp/alive; sleep 30; echo after", timeout=1
            )
        assert time.monotonic() - started < 10
        assert info.value.stdout == "before\n"
        assert isinstance(info.value, TimeoutError)
        # The command ran long; the connection was fine.
        assert not isinstance(info.value, WrennConnectionError)
        # the command was stopped, not left running
        survivors = await capsule.commands.run("ps -eo args | grep -c '[s]leep 30' || true")
        assert survivors.stdout.strip() == "0"


async def test_background_handle_wait_kill_and_list(local_server: LocalServer) -> None:
    async with await new_capsule(local_server) as capsule:
        handle = await capsule.commands.run("sleep 0.5; echo done", background=True, tag="job-1")
        assert handle.tag == "job-1" and handle.pid > 0
        assert handle.capsule_id == capsule.capsule_id
        result = await handle.wait(timeout=20)
        assert result.stdout == "done\n" and result.exit_code == 0
        sleeper = await capsule.commands.run("sleep 60", background=True, tag="sleeper")
        assert "sleeper" in [p.tag for p in await capsule.commands.list()]
        await sleeper.kill(signal="SIGTERM")
        deadline = time.monotonic() + 10
        while (
            "sleeper" in [p.tag for p in await capsule.commands.list()]
            and time.monotonic() < deadline
        ):
            await capsule.commands.run("true")
        assert "sleeper" not in [p.tag for p in await capsule.commands.list()]
        with pytest.raises(ValueError):
            await capsule.commands.kill(1, signal="SIGHUP")


async def test_stream_yields_typed_events_and_closes_on_break(local_server: LocalServer) -> None:
    async with await new_capsule(local_server) as capsule:
        events = [event async for event in capsule.commands.stream("echo one; echo two")]
        assert isinstance(events[0], StreamStartEvent)
        assert "".join(e.data for e in events if isinstance(e, StreamStdoutEvent)) == "one\ntwo\n"
        assert isinstance(events[-1], StreamExitEvent) and events[-1].exit_code == 0
        async with capsule.commands.stream(
            "for i in $(seq 1 1000); do echo $i; sleep 0.01; done"
        ) as stream:
            async for event in stream:
                if isinstance(event, StreamStdoutEvent):
                    break
        assert stream.pid is not None
        argv_events = [e async for e in capsule.commands.stream("echo", ["a b"])]
        assert "".join(e.data for e in argv_events if isinstance(e, StreamStdoutEvent)) == "a b\n"


async def test_connect_follows_a_background_process(local_server: LocalServer) -> None:
    async with await new_capsule(local_server) as capsule:
        handle = await capsule.commands.run("sleep 0.3; echo late; sleep 0.2", background=True)
        async with handle.connect() as stream:
            seen = [event async for event in stream]
        assert "".join(e.data for e in seen if isinstance(e, StreamStdoutEvent)) == "late\n"
        assert isinstance(seen[-1], StreamExitEvent)


async def test_files_roundtrip(local_server: LocalServer) -> None:
    async with await new_capsule(local_server) as capsule:
        files = capsule.files
        await files.write("/root/hello.txt", "héllo")
        assert await files.read("/root/hello.txt") == "héllo"
        await files.write("/root/bin.dat", bytes(range(256)))
        assert await files.read_bytes("/root/bin.dat") == bytes(range(256))
        entry = await files.make_dir("/root/sub")
        assert entry.type is FileType.directory
        assert (await files.make_dir("/root/sub")).name == "sub"  # existing: returned as is
        names = {e.name for e in await files.list("/root")}
        assert {"hello.txt", "bin.dat", "sub"} <= names
        assert await files.exists("/root/hello.txt")
        assert await files.exists("/root/sub/")
        assert await files.exists("/")
        assert not await files.exists("/root/missing")
        assert not await files.exists("/no/such/parent/file")
        await files.remove("/root/sub")
        assert not await files.exists("/root/sub")
        with pytest.raises(WrennAgentError):
            await files.read("/root/missing")


async def test_streamed_upload_and_download_in_chunks(local_server: LocalServer) -> None:
    chunk = bytes(range(256)) * 256  # 64 KiB

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(32):
            yield chunk

    async with await new_capsule(local_server) as capsule:
        await capsule.files.upload_stream("/tmp/big.bin", chunks())
        received = 0
        async with capsule.files.download_stream("/tmp/big.bin") as download:
            async for part in download:
                assert part
                received += len(part)
        assert received == 32 * len(chunk)
        # stopping early: the context manager releases the connection at once
        async with capsule.files.download_stream("/tmp/big.bin") as download:
            async for part in download:
                assert part[:3] == b"\x00\x01\x02"
                break


async def test_terminal_input_resize_and_kill_on_exit(local_server: LocalServer) -> None:
    async with await new_capsule(local_server) as capsule:
        async with capsule.pty(cols=100, rows=30) as terminal:
            assert terminal.tag is not None and terminal.tag.startswith("pty-")
            assert terminal.pid is not None
            await terminal.write("stty size; echo mark$((40+2))\n")
            output = b""
            async for event in terminal:
                if event.type == "output" and isinstance(event.data, bytes):
                    output += event.data
                if b"mark42" in output or len(output) > 100_000:
                    break
            assert b"30 100" in output
            await terminal.resize(120, 40)
            await terminal.write("stty size; echo mark$((40+3))\n")
            output = b""
            async for event in terminal:
                if event.type == "output" and isinstance(event.data, bytes):
                    output += event.data
                if b"mark43" in output or len(output) > 100_000:
                    break
            assert b"40 120" in output
            tag = terminal.tag
        # leaving the block killed the terminal's process
        deadline = time.monotonic() + 10
        while tag in [p.tag for p in await capsule.commands.list()] and time.monotonic() < deadline:
            await capsule.commands.run("true")
        assert tag not in [p.tag for p in await capsule.commands.list()]


async def test_terminal_reconnect_by_tag_keeps_tag_and_pid(local_server: LocalServer) -> None:
    async with await new_capsule(local_server) as capsule:
        first = capsule.pty()
        await first.__aenter__()
        tag, pid = first.tag, first.pid
        await first.aclose()  # leave it running
        assert tag is not None
        async with capsule.pty_connect(tag) as again:
            assert again.tag == tag and again.pid == pid
            await again.write("exit 7\n")
            codes = [event.exit_code async for event in again if event.type == "exit"]
        assert codes == [7]


async def test_bad_arguments_fail_before_io(local_server: LocalServer) -> None:
    async with await new_capsule(local_server) as capsule:
        with pytest.raises(ValueError):
            await capsule.commands.run("")
        with pytest.raises(TypeError):
            await capsule.commands.run(["ok", 3])  # type: ignore[list-item]
        with pytest.raises(ValueError):
            await capsule.commands.run("true", envs={"BAD-NAME": "x"})
        with pytest.raises(ValueError):
            await capsule.commands.run("true", timeout=0)
        with pytest.raises(ValueError):
            capsule.pty(cols=0)
        with pytest.raises(ValueError):
            await capsule.files.read("")
        with pytest.raises(ValueError):
            capsule.get_url(0)
        # following an unknown process yields the server's error event and ends
        unknown = [event async for event in capsule.commands.connect(999999)]
        assert [type(event) for event in unknown] == [StreamErrorEvent]
