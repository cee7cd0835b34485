"""The microVM engine end to end: real QEMU (TCG) guests booted from the cached image.

Skipped where QEMU or the image tools are missing.  The first run builds the image
(about 20 s, cached under ``WRENN_VM_CACHE`` or ``~/.cache/wrenn/vm``).  A cold
boot costs ~2.5 CPU-seconds on a 2-core machine, so at most two VMs run at once:
one shared by the module, plus one for the snapshot test (whose source is
destroyed before its restore starts).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wrenn.local._vm import AgentError, Image, MicroVm, VmSpec, build_image
from wrenn.local._vm._agent import MAX_EXEC_OUTPUT

_TOOLS = ("qemu-system-x86_64", "qemu-img", "mmdebstrap", "mke2fs")
_MISSING = [tool for tool in _TOOLS if shutil.which(tool) is None]

pytestmark = [
    pytest.mark.vm,
    pytest.mark.skipif(
        bool(_MISSING) or not Path("/bin/busybox").is_file(),
        reason=f"microVM tests need {', '.join(_TOOLS)} and busybox-static "
        f"(missing: {', '.join(_MISSING) or 'busybox'})",
    ),
    pytest.mark.skipif(os.environ.get("WRENN_VM_TESTS") == "0", reason="WRENN_VM_TESTS=0"),
]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="module")
def image() -> Image:
    return build_image()


@pytest.fixture(scope="module")
def vm(image: Image, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MicroVm]:
    machine = MicroVm.boot(image, tmp_path_factory.mktemp("vm"), VmSpec(vcpus=1, memory_mb=256))
    try:
        yield machine
    finally:
        machine.destroy()
    assert _gone(machine.pid)


def test_boot_and_exec_with_env_and_cwd(vm: MicroVm) -> None:
    result = vm.exec(["sh", "-c", 'echo "$GREETING"; pwd'], env={"GREETING": "hi vm"}, cwd="/tmp")
    assert result.exit_code == 0
    assert result.stdout == b"hi vm\n/tmp\n"
    assert result.stderr == b""


def test_qemu_runs_under_its_seccomp_filter(vm: MicroVm) -> None:
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{vm.pid}/status").read_text().splitlines()
    )
    assert status["Seccomp"].strip() == "2"  # filtered
    assert status["NoNewPrivs"].strip() == "1"


def test_exit_code_and_stderr(vm: MicroVm) -> None:
    result = vm.exec(["sh", "-c", "echo oops >&2; exit 3"])
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"", b"oops\n")


def test_a_missing_program_or_cwd_is_an_agent_error(vm: MicroVm) -> None:
    with pytest.raises(AgentError, match="FileNotFoundError"):
        vm.exec(["/no/such/program"])
    with pytest.raises(AgentError, match="FileNotFoundError"):
        vm.exec(["true"], cwd="/no/such/dir")
    assert vm.exec(["true"]).exit_code == 0  # the agent carries on


def test_exec_timeout_kills_the_command(vm: MicroVm) -> None:
    started = time.monotonic()
    result = vm.exec(["sleep", "30"], timeout=1.0)
    assert result.timed_out
    assert result.exit_code == -9
    assert time.monotonic() - started < 10


def test_memory_and_vcpus_are_the_vms_own(vm: MicroVm) -> None:
    meminfo = vm.exec(["cat", "/proc/meminfo"]).stdout.decode()
    total_kib = int(meminfo.splitlines()[0].split()[1])
    # The guest kernel keeps some of -m for itself; never more than -m, and the
    # host's own memory (24 GiB on the test machine) is far above it.
    assert 0.6 * 256 * 1024 < total_kib <= 256 * 1024
    assert vm.exec(["nproc"]).stdout == b"1\n"


def test_output_past_the_cap_comes_back_truncated(vm: MicroVm) -> None:
    script = f"head -c {3 * MAX_EXEC_OUTPUT} /dev/zero; head -c {MAX_EXEC_OUTPUT + 1} /dev/zero >&2"
    result = vm.exec(["sh", "-c", script], timeout=60.0)
    assert (result.exit_code, result.truncated) == (0, True)
    assert result.stdout == result.stderr == bytes(MAX_EXEC_OUTPUT)
    after = vm.exec(["echo", "still here"])  # the agent and the channel carry on
    assert (after.stdout, after.truncated) == (b"still here\n", False)
    assert vm.ping()["ok"]


def test_files_round_trip_in_the_guest(vm: MicroVm) -> None:
    files = vm.files
    files.mkdir("/root/data/sub", parents=True)
    payload = os.urandom(5 * 1024 * 1024)
    assert files.write_bytes("/root/data/big.bin", payload) == len(payload)
    assert files.read_bytes("/root/data/big.bin") == payload
    digest = vm.exec(["sha256sum", "/root/data/big.bin"]).stdout.split()[0]
    assert digest.decode() == hashlib.sha256(payload).hexdigest()  # the guest's own disk
    files.write_bytes("/root/data/note.txt", b"hello guest\n", mode=0o600)
    assert [(e.name, e.type) for e in files.list_dir("/root/data")] == [
        ("big.bin", "file"),
        ("note.txt", "file"),
        ("sub", "dir"),
    ]
    note = files.stat("/root/data/note.txt")
    assert (note.type, note.size, note.mode) == ("file", 12, 0o600)
    files.remove("/root/data/note.txt")
    with pytest.raises(AgentError, match="FileNotFoundError"):
        files.stat("/root/data/note.txt")
    files.remove("/root/data", recursive=True)
    assert vm.exec(["ls", "/root"]).stdout == b""


def test_snapshot_restores_running_processes_into_a_new_qemu(image: Image, tmp_path: Path) -> None:
    source = MicroVm.boot(image, tmp_path / "source", VmSpec(vcpus=1, memory_mb=256))
    try:
        counter = "i=0; while :; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; sleep 0.1; done"
        started = source.exec(["sh", "-c", f"sh -c '{counter}' >/dev/null 2>&1 & echo $!"])
        counter_pid = int(started.stdout)
        before = _wait_count(source, above=3)
        snapshot = source.snapshot(tmp_path / "snap")
        assert source.status() == "postmigrate"
        source.resume()  # the source may carry on after its snapshot
        assert source.exec(["cat", "/proc/uptime"]).exit_code == 0
    finally:
        source.destroy()
    assert _gone(source.pid)
    assert (snapshot / "memory").stat().st_size > 0

    time.sleep(2.0)  # the guest clock must not lose these seconds after the restore
    restored = MicroVm.restore(image, snapshot, tmp_path / "restored")
    try:
        assert restored.pid != source.pid
        alive = restored.exec(["sh", "-c", f"test -d /proc/{counter_pid} && echo alive"])
        assert alive.stdout == b"alive\n"
        after = _wait_count(restored, above=before + 5)
        assert after > before
        guest_now = float(restored.exec(["date", "+%s.%N"]).stdout)
        assert abs(guest_now - time.time()) < 2.0
        restored.exec(["sh", "-c", "echo changed > /root/marker; sync"])
    finally:
        restored.destroy()
    assert _gone(restored.pid)

    # A restore works on copies: the snapshot restores again as it was taken.
    again = MicroVm.restore(image, snapshot, tmp_path / "again")
    try:
        check = again.exec(["sh", "-c", f"test -d /proc/{counter_pid} && ls /root"])
        assert (check.exit_code, check.stdout) == (0, b"")
    finally:
        again.destroy()
    assert _gone(again.pid)


def _wait_count(vm: MicroVm, above: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = vm.exec(["cat", "/tmp/count"]).stdout.strip()
        if text and int(text) > above:
            return int(text)
        time.sleep(0.2)
    raise AssertionError(f"the counter did not pass {above} within {timeout} s")


def test_build_image_command_prints_the_cached_image(
    image: Image, capsys: pytest.CaptureFixture[str]
) -> None:
    from wrenn.local._vm.__main__ import main

    assert main(["build-image", "--cache-dir", str(image.directory.parent)]) == 0
    assert capsys.readouterr().out.strip() == str(image.directory)
