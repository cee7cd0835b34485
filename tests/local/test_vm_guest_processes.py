"""Processes in a real microVM (QEMU, TCG): streamed output, stdin, signals, a pty,
20 MiB through the credit window.  One VM for the module, destroyed at its end."""

from __future__ import annotations

import hashlib
import signal
import threading
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from wrenn.local._vm import GuestProcess, Image, MicroVm, VmSpec, build_image
from wrenn.local._vm._guest_processes import CREDIT_WINDOW, MAX_CHUNK_BYTES

from .test_vm_engine import _gone, pytestmark  # noqa: F401  (the vm marker and skips)
from .test_vm_processes import read_all, read_until


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MicroVm]:
    image: Image = build_image()
    machine = MicroVm.boot(image, tmp_path_factory.mktemp("vm"), VmSpec(vcpus=1, memory_mb=256))
    try:
        yield machine
    finally:
        machine.destroy()
    assert _gone(machine.pid)


def test_two_processes_at_once_interleave(vm: MicroVm) -> None:
    script = 'for i in 1 2 3 4 5; do echo "$0$i"; sleep 0.1; done'
    first = vm.processes.start(["sh", "-c", script, "a"])
    second = vm.processes.start(["sh", "-c", script, "b"])
    arrivals: list[tuple[str, float]] = []
    outputs: dict[int, dict[str, bytes]] = {}

    def collect(process: GuestProcess, name: str) -> None:
        seen = bytearray()
        while (chunk := process.read(30.0)) is not None:
            seen += chunk.data
            arrivals.append((name, time.monotonic()))
        outputs[process.id] = {"stdout": bytes(seen)}

    readers = [
        threading.Thread(target=collect, args=(first, "a")),
        threading.Thread(target=collect, args=(second, "b")),
    ]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(timeout=60.0)
    assert outputs[first.id] == {"stdout": b"a1\na2\na3\na4\na5\n"}
    assert outputs[second.id] == {"stdout": b"b1\nb2\nb3\nb4\nb5\n"}
    names = [name for name, _ in sorted(arrivals, key=lambda item: item[1])]
    assert names != sorted(names)  # both streamed while the other ran
    assert first.wait(10.0) == second.wait(10.0) == 0


def test_cat_echoes_stdin(vm: MicroVm) -> None:
    cat = vm.processes.start(["cat"])
    for line in (b"one\n", b"two\n"):
        cat.write_stdin(line)
        assert read_until(cat, line, timeout=30.0) == line
    cat.close_stdin()
    assert cat.read(30.0) is None and cat.wait(10.0) == 0


def test_a_sleep_is_killed_by_a_signal(vm: MicroVm) -> None:
    sleeper = vm.processes.start(["sleep", "100"])
    with pytest.raises(TimeoutError):
        sleeper.wait(0.5)
    sleeper.signal(signal.SIGTERM)
    assert sleeper.wait(30.0) in (-signal.SIGTERM, -signal.SIGKILL)
    killed = vm.processes.start(["sleep", "100"])
    killed.signal(signal.SIGKILL)
    assert killed.wait(30.0) == -signal.SIGKILL


def test_a_pty_sees_its_resize(vm: MicroVm) -> None:
    shell = vm.processes.start(
        ["sh", "-c", "stty size; read line; stty size; tty"], pty=True, rows=24, cols=80
    )
    assert b"24 80" in read_until(shell, b"24 80", timeout=30.0)
    shell.resize(50, 132)
    shell.write_stdin(b"\n")
    rest = read_until(shell, b"/dev/pts/", timeout=30.0)
    assert b"50 132" in rest
    assert set(read_all(shell, timeout=30.0)) <= {"pty"}
    assert shell.wait(10.0) == 0


def test_20_mib_of_output_byte_exact_in_bounded_memory(vm: MicroVm) -> None:
    size = 20 * 1024 * 1024
    made = vm.exec(
        ["sh", "-c", f"head -c {size} /dev/urandom > /tmp/big && sha256sum /tmp/big"], timeout=120
    )
    assert made.exit_code == 0, made.stderr
    expected = made.stdout.split()[0].decode()
    digest, total, max_in_flight = hashlib.sha256(), 0, 0
    tracemalloc.start()
    started = time.monotonic()
    try:
        cat = vm.processes.start(["cat", "/tmp/big"])
        while (chunk := cat.read(60.0)) is not None:
            assert chunk.stream == "stdout" and len(chunk.data) <= MAX_CHUNK_BYTES
            max_in_flight = max(max_in_flight, cat._in_flight)
            digest.update(chunk.data)
            total += len(chunk.data)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (total, digest.hexdigest()) == (size, expected)
    assert cat.wait(10.0) == 0
    assert max_in_flight <= CREDIT_WINDOW
    assert peak < 8 * 1024 * 1024, f"peak of traced host allocations {peak} bytes"
    print(f"\n20 MiB in {elapsed:.1f} s, traced peak {peak / 2**20:.2f} MiB")
    # The VM and the channel carry on.
    assert vm.ping()["ok"] and vm.exec(["echo", "after"]).stdout == b"after\n"
