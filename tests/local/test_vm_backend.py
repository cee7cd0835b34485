"""``LocalServer(isolation="microvm")`` end to end: capsules that are QEMU guests.

The checks only a VM passes: a process keeps its memory across pause and resume,
across a server restart while paused, and into a capsule created from a snapshot
of it; ``memory_mb`` and ``vcpus`` are the guest's own.  Skipped where QEMU or the
image tools are missing (see ``src/wrenn/local/_vm/README.md``); the image is built
once (about 20 s) and each capsule shape's base snapshot once (a 4 s cold boot).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from wrenn import AsyncCapsule, Capsule
from wrenn.local import LocalServer
from wrenn.local._runtime._cgroup import Limits
from wrenn.local._runtime._microvm import VmSandbox
from wrenn.local._vm import build_image

from .helpers import create, destroy, error_of, pause, resume, sh, snapshot, wait_for

_TOOLS = ("qemu-system-x86_64", "qemu-img", "mmdebstrap", "mke2fs")
_MISSING = [tool for tool in _TOOLS if shutil.which(tool) is None]

pytestmark = [
    pytest.mark.local,
    pytest.mark.vm,
    pytest.mark.skipif(
        bool(_MISSING) or not Path("/bin/busybox").is_file(),
        reason=f"microVM tests need {', '.join(_TOOLS)} and busybox-static "
        f"(missing: {', '.join(_MISSING) or 'busybox'})",
    ),
    pytest.mark.skipif(os.environ.get("WRENN_VM_TESTS") == "0", reason="WRENN_VM_TESTS=0"),
]

MEMORY_MB = 256  # every capsule here has this shape: one base snapshot serves them all

# A process whose state lives only in its memory: it counts, and writes the count
# (atomically) with its pid.  After a restore it must carry on from where it was.
COUNTER = (
    "import os, time\n"
    "n = 0\n"
    "while True:\n"
    "    n += 1\n"
    "    with open('/root/count.tmp', 'w') as f:\n"
    "        f.write(f'{os.getpid()} {n}')\n"
    "    os.replace('/root/count.tmp', '/root/count')\n"
    "    time.sleep(0.05)\n"
)


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build_image()  # where the backend's probe looks (WRENN_VM_CACHE or the user cache)
    return tmp_path_factory.mktemp("vm-server")


def _server(state_dir: Path) -> LocalServer:
    return LocalServer(isolation="microvm", state_dir=state_dir)


def _client(server: LocalServer) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers={"X-API-Key": server.api_key}, timeout=60)


@pytest.fixture(scope="module")
def server(state_dir: Path) -> Iterator[LocalServer]:
    with _server(state_dir) as srv:
        yield srv


@pytest.fixture(scope="module")
def http(server: LocalServer) -> Iterator[httpx.Client]:
    with _client(server) as client:
        yield client


def _start_counter(http: httpx.Client, capsule_id: str) -> int:
    r = http.post(
        f"/v1/capsules/{capsule_id}/exec",
        json={"cmd": "python3", "args": ["-c", COUNTER], "background": True},
    )
    assert r.status_code == 202, r.text
    assert wait_for(lambda: _count(http, capsule_id) is not None, timeout=20)
    return int(r.json()["pid"])


def _count(http: httpx.Client, capsule_id: str) -> tuple[int, int] | None:
    """(pid, count) the counter last wrote, or None before its first write."""
    out = sh(http, capsule_id, "cat /root/count 2>/dev/null || true")["stdout"]
    if not out:
        return None
    pid, count = out.split()
    return int(pid), int(count)


def _counts_on(http: httpx.Client, capsule_id: str, pid: int, since: int) -> None:
    """The counter with ``pid`` is alive and counts on from ``since`` (not from 0)."""
    assert wait_for(lambda: (_count(http, capsule_id) or (0, 0))[1] > since + 5, timeout=20)
    now = _count(http, capsule_id)
    assert now is not None and now[0] == pid
    assert sh(http, capsule_id, f"kill -0 {pid} && echo alive")["stdout"] == "alive\n"


def test_a_capsule_is_a_guest_of_its_own_shape(http: httpx.Client) -> None:
    capsule_id = create(http, memory_mb=MEMORY_MB, vcpus=1)
    try:
        out = sh(http, capsule_id, "nproc; grep MemTotal /proc/meminfo; hostname; pwd; id -u")
        nproc, memtotal, hostname, pwd, uid = out["stdout"].splitlines()
        assert nproc == "1"
        total_mb = int(memtotal.split()[1]) // 1024
        # The guest kernel keeps some of its RAM for itself.
        assert MEMORY_MB * 0.6 < total_mb <= MEMORY_MB
        assert (hostname, pwd, uid) == ("wrenn", "/root", "0")
        # Not the host: none of the host's processes, nor its files.
        assert (
            sh(http, capsule_id, f"test -e /proc/{os.getpid()} && echo seen || true")["stdout"]
            == ""
        )
        assert (
            sh(http, capsule_id, "echo $((1+2)) > /workspace/x; cat /workspace/x")["stdout"]
            == "3\n"
        )
    finally:
        destroy(http, capsule_id)


def test_the_guest_console_fills_no_host_file(http: httpx.Client, server: LocalServer) -> None:
    capsule_id = create(http, memory_mb=MEMORY_MB)
    try:
        vm_dir = server.state_dir / "capsules" / capsule_id / "vm"
        before = {p.name: p.stat().st_size for p in vm_dir.iterdir() if p.is_file()}
        flood = "head -c 300000 /dev/zero | tr '\\0' x > /dev/console; echo sent"
        assert sh(http, capsule_id, flood, timeout_sec=120)["stdout"] == "sent\n"
        after = {p.name: p.stat().st_size for p in vm_dir.iterdir() if p.is_file()}
        grown = {
            name: size - before.get(name, 0)
            for name, size in after.items()
            if name != "disk.qcow2" and size - before.get(name, 0) > 64 * 1024
        }
        assert grown == {}
    finally:
        destroy(http, capsule_id)


def test_capsules_restored_from_one_snapshot_have_their_own_random_numbers(
    http: httpx.Client,
) -> None:
    # Both restore the same base snapshot, kernel generator state included: the
    # restore reseeds it with the host's bytes, or both would read the same ones.
    first, second = create(http, memory_mb=MEMORY_MB), create(http, memory_mb=MEMORY_MB)
    try:
        read = "head -c 16 /dev/urandom | od -An -tx1"
        assert sh(http, first, read)["stdout"] != sh(http, second, read)["stdout"]
    finally:
        destroy(http, first)
        destroy(http, second)


def test_memory_mb_is_the_guests_limit(http: httpx.Client) -> None:
    capsule_id = create(http, memory_mb=MEMORY_MB)
    try:
        grab = "python3 -c 'b = bytearray({mb} * 1024 * 1024); print(len(b) >> 20)'"
        assert sh(http, capsule_id, grab.format(mb=64))["stdout"] == "64\n"
        over = sh(http, capsule_id, grab.format(mb=2 * MEMORY_MB))
        assert over["exit_code"] != 0  # a MemoryError or the guest's OOM killer
        # The capsule itself survives its process running out.
        assert sh(http, capsule_id, "echo ok")["stdout"] == "ok\n"
    finally:
        destroy(http, capsule_id)


def test_disk_size_mb_is_the_guests_disk(tmp_path: Path) -> None:
    with (
        LocalServer(isolation="microvm", state_dir=tmp_path / "state", disk_size_mb=1536) as srv,
        _client(srv) as http,
    ):
        capsule_id = create(http, memory_mb=MEMORY_MB)
        try:
            total_mb = int(sh(http, capsule_id, "df -m / | tail -1")["stdout"].split()[1])
            assert 1300 < total_mb <= 1536  # less the filesystem's own overhead
            too_big = sh(http, capsule_id, "fallocate -l 1600M /root/big; echo $?; rm -f /root/big")
            assert too_big["stdout"] != "0\n" and "No space left" in too_big["stderr"]
            fits = sh(http, capsule_id, "fallocate -l 200M /root/ok && echo fits")
            assert fits["stdout"] == "fits\n"
            assert http.get(f"/v1/capsules/{capsule_id}").json()["disk_size_mb"] == 1536
        finally:
            destroy(http, capsule_id)


def test_a_missing_program_is_a_start_failure(http: httpx.Client) -> None:
    capsule_id = create(http, memory_mb=MEMORY_MB)
    try:
        r = http.post(f"/v1/capsules/{capsule_id}/exec", json={"cmd": "/no/such/program"})
        status, code, message = error_of(r)
        assert (status, code) == (502, "agent_error")
        assert "start process" in message
    finally:
        destroy(http, capsule_id)


def test_pause_keeps_a_running_process_and_its_memory(http: httpx.Client) -> None:
    capsule_id = create(http, memory_mb=MEMORY_MB)
    try:
        pid = _start_counter(http, capsule_id)
        before = _count(http, capsule_id)
        assert before is not None
        pause(http, capsule_id)
        time.sleep(0.3)
        resume(http, capsule_id)
        _counts_on(http, capsule_id, pid, before[1])
    finally:
        destroy(http, capsule_id)


def test_a_paused_capsule_survives_a_server_restart(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    with _server(state_dir) as first, _client(first) as http:
        capsule_id = create(http, memory_mb=MEMORY_MB)
        pid = _start_counter(http, capsule_id)
        pause(http, capsule_id)
    # The first server's QEMU processes are gone; the paused memory is on disk.
    with _server(state_dir) as second, _client(second) as http:
        before = http.get(f"/v1/capsules/{capsule_id}").json()
        assert before["status"] == "paused"
        resume(http, capsule_id)
        _counts_on(http, capsule_id, pid, 0)
        destroy(http, capsule_id)


def test_a_running_capsule_keeps_its_processes_across_a_server_restart(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    with _server(state_dir) as first, _client(first) as http:
        capsule_id = create(http, memory_mb=MEMORY_MB)
        pid = _start_counter(http, capsule_id)
        seen = _count(http, capsule_id)
        assert seen is not None
    with _server(state_dir) as second, _client(second) as http:
        assert http.get(f"/v1/capsules/{capsule_id}").json()["status"] == "running"
        _counts_on(http, capsule_id, pid, seen[1])
        destroy(http, capsule_id)


def test_a_destroyed_running_vm_boots_cold_from_its_synced_disk(tmp_path: Path) -> None:
    """What a capsule whose memory could not be kept at a stop gets: its next boot is
    cold from its own disk, and what it wrote just before is there (synced)."""
    image = build_image()
    limits = Limits(vcpus=1, memory_mb=MEMORY_MB)

    async def run(argv: list[str]) -> tuple[int, bytes]:
        sandbox = VmSandbox("cl-sync", tmp_path, None, limits=limits, image=image)
        await sandbox.boot()
        try:
            proc = sandbox.start_process(argv, {"PATH": "/usr/bin:/bin"}, "/root")
            out = bytearray()
            proc.listen(lambda kind, data: out.extend(data) if kind == "stdout" else None)
            return await asyncio.wait_for(proc.wait(), 30), bytes(out)
        finally:
            await sandbox.destroy()  # running, not frozen: syncs, then quits

    assert asyncio.run(run(["sh", "-c", "echo kept > /root/kept.txt"]))[0] == 0
    assert not (tmp_path / "state").exists()
    assert asyncio.run(run(["cat", "/root/kept.txt"])) == (0, b"kept\n")


def test_a_capsule_from_a_snapshot_finds_its_sources_process_running(http: httpx.Client) -> None:
    source = create(http, memory_mb=MEMORY_MB)
    clone = None
    try:
        pid = _start_counter(http, source)
        name = snapshot(http, source)
        seen = _count(http, source)
        assert seen is not None
        # The source runs on after its snapshot.
        _counts_on(http, source, pid, seen[1])
        clone = create(http, template=name)
        _counts_on(http, clone, pid, 0)
        # Two guests from now on: a write in one is not seen in the other.
        sh(http, clone, "echo clone > /root/who")
        assert sh(http, source, "cat /root/who 2>/dev/null || echo none")["stdout"] == "none\n"
    finally:
        for capsule_id in (source, clone):
            if capsule_id is not None:
                destroy(http, capsule_id)


def test_the_blocking_sdk_runs_a_vm_capsule(server: LocalServer) -> None:
    with server.client() as client, Capsule(memory_mb=MEMORY_MB, client=client) as capsule:
        assert capsule.commands.run("echo hi from the guest").stdout == "hi from the guest\n"
        job = capsule.commands.run("sleep 0.2; echo done", background=True)
        assert job.wait(timeout=30).stdout == "done\n"
        capsule.pause()
        capsule.resume()
        assert capsule.commands.run(["cat", "/etc/hostname"]).stdout == "wrenn\n"
        # Files are the guest's, through its agent.
        capsule.files.write("/workspace/notes.txt", "from the host")
        assert capsule.commands.run("cat /workspace/notes.txt").stdout == "from the host"
        capsule.commands.run("mkdir -p /workspace/out && echo made > /workspace/out/a")
        assert capsule.files.read("/workspace/out/a") == "made\n"
        names = {entry.name for entry in capsule.files.list("/workspace")}
        assert {"notes.txt", "out"} <= names
        big = bytes(range(256)) * 12_000  # 3 MiB: more than one agent chunk each way
        capsule.files.upload_stream("/root/big.bin", [big[:1_000_000], big[1_000_000:]])
        with capsule.files.download_stream("/root/big.bin") as chunks:
            assert b"".join(chunks) == big
        capsule.files.remove("/workspace/out")
        assert capsule.commands.run("test -e /workspace/out || echo gone").stdout == "gone\n"
        # A terminal is a pty of the guest, through its agent.
        with capsule.pty(cols=90, rows=20) as terminal:
            terminal.write("stty size; cat /etc/hostname; exit 3\n")
            output, codes = b"", []
            for event in terminal:
                if event.type == "output" and isinstance(event.data, bytes):
                    output += event.data
                elif event.type == "exit":
                    codes.append(event.exit_code)
                    break
                assert len(output) < 100_000
        assert codes == [3]
        assert b"20 90\r\nwrenn\r\n" in output


@pytest.mark.anyio
async def test_the_async_sdk_runs_a_vm_capsule(server: LocalServer, anyio_backend: str) -> None:
    async with server.async_client() as client:
        capsule = await AsyncCapsule.create(memory_mb=MEMORY_MB, client=client)
        try:
            result = await capsule.commands.run(["python3", "-c", "print(6 * 7)"])
            assert (result.exit_code, result.stdout) == (0, "42\n")
            await capsule.pause()
            await capsule.resume()
            assert (await capsule.commands.run("echo $HOME")).stdout == "/root\n"
            await capsule.files.write("/root/x.txt", "async write")
            assert await capsule.files.read("/root/x.txt") == "async write"
        finally:
            await capsule.destroy()


def test_the_quick_start_runs_on_microvms() -> None:
    """The README's quick start, with every capsule a VM: create, exec, files, pause,
    resume, snapshot, a capsule from the snapshot, destroy."""
    example = Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WRENN_")}
    if "WRENN_VM_CACHE" in os.environ:  # where this run's image is
        env["WRENN_VM_CACHE"] = os.environ["WRENN_VM_CACHE"]
    env["WRENN_LOCAL_ISOLATION"] = "microvm"
    done = subprocess.run(
        [sys.executable, str(example)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "(isolation: microvm)" in done.stdout
    assert "it sees: 'written before the snapshot'" in done.stdout
    assert "done" in done.stdout.splitlines()[-1]
