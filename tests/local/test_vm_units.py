"""The microVM engine's parts that need no QEMU: image pieces, argv, QMP and the agent protocol.

The guest agent is run on the host here, over a socketpair, against the host-side
channel: the same JSON lines the virtio-serial port carries in a VM.
"""

from __future__ import annotations

import gzip
import json
import lzma
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from wrenn.local._vm import _argv, _initramfs, _kernel, _qmp, guest_agent
from wrenn.local._vm._agent import AgentChannel, AgentError

_FAKE_ELF = b"\x7fELF" + bytes(range(256)) * 64


def test_vmlinux_is_found_after_the_setup_code(tmp_path: Path) -> None:
    for compress in (lzma.compress, gzip.compress):
        bzimage = tmp_path / "vmlinuz"
        bzimage.write_bytes(
            b"MZ setup code \xfd7zXZ\x00 not a stream " + compress(_FAKE_ELF) + b"trailer"
        )
        assert _kernel.extract_vmlinux(bzimage) == _FAKE_ELF
    bzimage.write_bytes(b"no payload here")
    with pytest.raises(_kernel.KernelError, match="no XZ or gzip payload"):
        _kernel.extract_vmlinux(bzimage)


def _fake_kernel(tmp_path: Path, release: str) -> _kernel.HostKernel:
    boot, modules = tmp_path / "boot", tmp_path / "modules" / release
    boot.mkdir(exist_ok=True)
    modules.mkdir(parents=True)
    (boot / f"vmlinuz-{release}").write_bytes(b"")
    (modules / "modules.dep").write_text(
        "kernel/ext4.ko: kernel/jbd2.ko kernel/crc16.ko\n"
        "kernel/jbd2.ko: kernel/crc16.ko\n"
        "kernel/crc16.ko:\n"
        "kernel/virtio_blk.ko: kernel/virtio.ko\n"
        "kernel/virtio.ko:\n"
    )
    (modules / "modules.builtin").write_text("kernel/virtio_mmio.ko\n")
    return _kernel.HostKernel(release, boot / f"vmlinuz-{release}", modules)


def test_modules_come_with_their_dependencies_first(tmp_path: Path) -> None:
    kernel = _fake_kernel(tmp_path, "6.1.0-9-amd64")
    names = [p.name for p in _kernel.module_files(kernel, ("virtio_mmio", "ext4", "virtio_blk"))]
    assert names == ["crc16.ko", "jbd2.ko", "ext4.ko", "virtio.ko", "virtio_blk.ko"]
    with pytest.raises(_kernel.KernelError, match="no module 'nope'"):
        _kernel.module_files(kernel, ("nope",))


def test_the_newest_kernel_with_modules_is_chosen(tmp_path: Path) -> None:
    _fake_kernel(tmp_path, "6.1.0-9-amd64")
    _fake_kernel(tmp_path, "6.1.0-10-amd64")
    (tmp_path / "boot" / "vmlinuz-7.0.0-1-amd64").write_bytes(b"")  # no modules: skipped
    found = _kernel.find_kernel(tmp_path / "boot", tmp_path / "modules")
    assert found.release == "6.1.0-10-amd64"
    with pytest.raises(_kernel.KernelError, match="apt-get install"):
        _kernel.find_kernel(tmp_path / "nowhere", tmp_path / "modules")


def _cpio_entries(blob: bytes) -> dict[str, tuple[int, int, int, bytes]]:
    entries: dict[str, tuple[int, int, int, bytes]] = {}
    offset = 0
    while True:
        header = blob[offset : offset + 110]
        assert header[:6] == b"070701"
        fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        mode, size, rmajor, rminor, namesize = (
            fields[1],
            fields[6],
            fields[9],
            fields[10],
            fields[11],
        )
        name = blob[offset + 110 : offset + 110 + namesize - 1].decode()
        offset += 110 + namesize
        offset += -offset % 4
        data = blob[offset : offset + size]
        offset += size + (-size % 4)
        if name == "TRAILER!!!":
            assert offset == len(blob)
            return entries
        entries[name] = (mode, rmajor, rminor, data)


def test_initramfs_is_a_newc_archive_with_console_and_modules(tmp_path: Path) -> None:
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF busybox")
    module = tmp_path / "ext4.ko"
    module.write_bytes(b"module")
    entries = _cpio_entries(_initramfs.build_initramfs(busybox, [module]))
    assert entries["dev/console"][:3] == (0o20600, 5, 1)
    assert entries["init"][3].startswith(b"#!/bin/busybox sh")
    assert entries["init"][0] & 0o111
    assert entries["modules/ext4.ko"][3] == b"module"
    assert entries["modules.order"][3] == b"ext4.ko\n"


def test_the_qemu_argv_carries_the_shape_and_the_tsc_fix(tmp_path: Path) -> None:
    def argv_for(incoming: bool) -> list[str]:
        return _argv.qemu_argv(
            qemu="qemu",
            vmlinux=Path("/k"),
            initramfs=Path("/i"),
            paths=_argv.VmPaths(tmp_path),
            vcpus=2,
            memory_mb=384,
            incoming=incoming,
        )

    argv = argv_for(incoming=False)
    assert argv[argv.index("-smp") + 1] == "2" and argv[argv.index("-m") + 1] == "384M"
    assert argv[argv.index("-nic") + 1] == "none"
    cmdline = argv[argv.index("-append") + 1]
    for option in ("tsc_early_khz=", "lpj=", "tsc=reliable", "no_timer_check"):
        assert option in cmdline
    assert "-incoming" not in argv
    # The console is a ring in QEMU's memory: no host file a guest could fill.
    assert argv[argv.index("-serial") + 1] == "chardev:console"
    assert "ringbuf,id=console,size=65536" in argv
    assert not [arg for arg in argv if "file:" in arg]
    sandbox = argv[argv.index("-sandbox") + 1].split(",")
    assert sandbox[0] == "on" and {"elevateprivileges=deny", "resourcecontrol=deny"} <= set(sandbox)
    # A restore must match the booted VM's machine exactly, plus the incoming options.
    assert argv_for(incoming=True) == [*argv, "-incoming", "defer", "-S"]


def test_qmp_client_negotiates_skips_events_and_raises_errors(tmp_path: Path) -> None:
    path = tmp_path / "qmp.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    seen: list[str] = []

    def fake_qemu() -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rwb") as stream:
            stream.write(b'{"QMP": {"version": {}, "capabilities": []}}\n')
            stream.flush()
            for line in stream:
                command = json.loads(line)["execute"]
                seen.append(command)
                if command == "query-status":
                    stream.write(
                        b'{"event": "STOP", "data": {}}\n{"return": {"status": "paused"}}\n'
                    )
                elif command == "bogus":
                    stream.write(b'{"error": {"class": "CommandNotFound", "desc": "nope"}}\n')
                else:
                    stream.write(b'{"return": {}}\n')
                stream.flush()

    thread = threading.Thread(target=fake_qemu, daemon=True)
    thread.start()
    client = _qmp.QmpClient.connect(path, timeout=5.0)
    try:
        assert client.execute("query-status") == {"status": "paused"}
        assert client.events == [{"event": "STOP", "data": {}}]
        with pytest.raises(_qmp.QmpError, match="CommandNotFound: nope"):
            client.execute("bogus")
    finally:
        client.close()
        thread.join(timeout=5.0)
        listener.close()
    assert seen == ["qmp_capabilities", "query-status", "bogus"]


@pytest.fixture
def channel() -> Iterator[AgentChannel]:
    host, guest = socket.socketpair()
    agent = guest_agent.Agent(guest.fileno())
    thread = threading.Thread(target=agent.serve, kwargs={"return_on_eof": True}, daemon=True)
    thread.start()
    chan = AgentChannel(host)
    try:
        yield chan
    finally:
        host.shutdown(socket.SHUT_WR)
        thread.join(timeout=10.0)
        chan.close()
        guest.close()


def test_agent_protocol_exec_env_cwd_and_exit(channel: AgentChannel, tmp_path: Path) -> None:
    assert channel.handshake(timeout=5.0)["ok"]
    result = channel.exec(
        ["sh", "-c", 'echo "$A"; pwd; echo e >&2; exit 4'], {"A": "b"}, str(tmp_path)
    )
    assert (result.exit_code, result.stdout, result.stderr) == (
        4,
        f"b\n{tmp_path}\n".encode(),
        b"e\n",
    )
    timed_out = channel.exec(["sleep", "30"], timeout=0.3)
    assert timed_out.timed_out and timed_out.exit_code == -9
    with pytest.raises(AgentError, match="FileNotFoundError"):
        channel.exec(["/no/such/program"])
    with pytest.raises(AgentError, match="unknown op"):
        channel.request({"op": "reboot"}, timeout=5.0)
