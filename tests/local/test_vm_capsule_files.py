"""VmCapsuleFiles answers like CapsuleFS, without QEMU.

The real guest agent runs in a child process chrooted into a temp dir (the
test's "guest"), over a socketpair; CapsuleFS gets the same dir as its capsule
root.  Both then see one tree under the same capsule paths, and every case of
the table runs against each on a freshly built copy of it: the answers, the
errors and the tree afterwards must be identical.  The chroot also keeps a wrong
case (a remove of "/") inside the temp dir.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from wrenn.local._capsules import Manager
from wrenn.local._files import CapsuleFiles, FsError
from wrenn.local._fs import CapsuleFS
from wrenn.local._live import Live
from wrenn.local._runtime import Capabilities, Unsupported
from wrenn.local._vm._agent import AgentChannel, AgentError
from wrenn.local._vm._capsule_files import VmCapsuleFiles
from wrenn.local._vm._guest_files import CHUNK_BYTES, GuestEntry, GuestFiles

from ..test_runtime_sandbox_split import _Minimal

# An mtime whose float rounds up to the next second, as int(st_mtime) sees it.
MTIME_NS = 1_700_000_000_999_999_999
# The agent in a chroot: a name lookup first, so glibc has loaded its NSS module
# (later lookups read the chroot's /etc/passwd and /etc/group).
_CHROOTED_AGENT = """
import os, pwd, sys
from wrenn.local._vm import guest_agent
pwd.getpwuid(0)
os.chroot(sys.argv[1])
os.chdir("/")
guest_agent.Agent(int(sys.argv[2])).serve(return_on_eof=True)
"""
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root")


class Capsule:
    def __init__(self, root: Path, files: GuestFiles) -> None:
        self.root = root
        self.files = files

    def host(self) -> CapsuleFS:
        return CapsuleFS(lambda: os.open(self.root, os.O_RDONLY | os.O_DIRECTORY))

    def vm(self) -> VmCapsuleFiles:
        return VmCapsuleFiles(self.files)


@pytest.fixture
def capsule(tmp_path: Path) -> Iterator[Capsule]:
    root = tmp_path / "guest"
    root.mkdir()
    host, guest = socket.socketpair()
    agent = subprocess.Popen(
        [sys.executable, "-c", _CHROOTED_AGENT, str(root), str(guest.fileno())],
        pass_fds=[guest.fileno()],
    )
    guest.close()
    channel = AgentChannel(host)
    try:
        yield Capsule(root, GuestFiles(channel))
    finally:
        host.shutdown(socket.SHUT_WR)
        try:
            agent.wait(timeout=10.0)
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait()
            channel.close()


def build_tree(root: Path) -> None:
    """The same capsule tree every time, mtimes included (set bottom-up, links too).

    The root itself stays: it is the agent's chroot."""
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    (root / "root/sub/deep").mkdir(parents=True)
    (root / "root/notes.txt").write_bytes(b"hello notes")
    (root / "root/notes.txt").chmod(0o640)
    (root / "root/sub/deep/x.bin").write_bytes(bytes(range(256)))
    (root / "dir/b").mkdir(parents=True)
    (root / "dir/a.txt").write_bytes(b"a" * 100)
    (root / "dir/b/c.txt").write_bytes(b"c")
    (root / "dir/run.sh").write_bytes(b"#!/bin/sh\n")
    (root / "dir/run.sh").chmod(0o4755)
    (root / "empty").mkdir()
    (root / "deep" / "/".join(["d"] * 70)).mkdir(parents=True)  # past the 64-level stop
    (root / "etc").mkdir()
    for name in ("passwd", "group"):  # owner names, for both sides alike
        shutil.copyfile(f"/etc/{name}", root / "etc" / name)
    # Plain files where the kernel's would be: refused by their path alone.
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/status").write_bytes(b"not the kernel's")
    (root / "dev").mkdir()
    (root / "dev/null").write_bytes(b"")
    os.symlink("a.txt", root / "dir/link_file")
    os.symlink("/dir/b", root / "dir/link_abs")
    os.symlink("missing", root / "dir/dangling")
    os.symlink("loop", root / "dir/loop")
    os.symlink("../root/./sub/../notes.txt", root / "dir/link_up")
    os.symlink("/../../dir/a.txt", root / "dir/link_above_root")
    os.mkfifo(root / "dir/pipe", 0o600)
    for top, dirs, names in os.walk(root, topdown=False):
        for name in [*dirs, *names]:
            os.utime(Path(top, name), ns=(MTIME_NS, MTIME_NS), follow_symlinks=False)
    os.utime(root, ns=(MTIME_NS, MTIME_NS))


def snapshot(root: Path) -> list[tuple[Any, ...]]:
    """What a case left behind: every path, its kind, mode and contents."""
    out: list[tuple[Any, ...]] = []
    for top, dirs, names in os.walk(root):
        for name in [*dirs, *names]:
            path = Path(top, name)
            st = path.lstat()
            data = path.read_bytes() if stat.S_ISREG(st.st_mode) else None
            link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
            out.append((str(path.relative_to(root)), st.st_mode, data, link))
    return sorted(out)


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("ok", call())
    except FsError as exc:
        return ("FsError", (exc.message, exc.status, exc.code))


def fresh_entries(result: Any) -> Any:
    """Drop the mtime of what a case just made (it is now, not MTIME_NS)."""
    if isinstance(result, dict):
        return {k: v for k, v in result.items() if k != "modified_at"}
    return result


Case = Callable[[CapsuleFiles], Any]


def run_both(capsule: Capsule, case: Case) -> tuple[Any, Any]:
    results = []
    for fs in (capsule.host(), capsule.vm()):
        build_tree(capsule.root)
        results.append((outcome(lambda fs=fs: case(fs)), snapshot(capsule.root)))
    return results[0], results[1]


CASES: dict[str, Case] = {
    # paths
    "empty path": lambda fs: fs.read_bytes(""),
    "NUL byte": lambda fs: fs.list_dir("/dir\0", 1),
    # read_bytes and the checks before any read
    "read relative to home": lambda fs: fs.read_bytes("notes.txt"),
    "read absolute": lambda fs: fs.read_bytes("/dir/a.txt"),
    "read through .. and links": lambda fs: fs.read_bytes("/dir/b/../link_up"),
    "read through a link above the root": lambda fs: fs.read_bytes("/dir/link_above_root"),
    "read above the root": lambda fs: fs.read_bytes("../../../root/notes.txt"),
    "read a missing file": lambda fs: fs.read_bytes("/dir/nope"),
    "read under a missing dir": lambda fs: fs.read_bytes("/nope/x"),
    "read through a file": lambda fs: fs.read_bytes("/dir/a.txt/x"),
    "read a directory": lambda fs: fs.read_bytes("/dir"),
    "read the root": lambda fs: fs.read_bytes("/"),
    "read the root through ..": lambda fs: fs.read_bytes("/dir/.."),
    "read a fifo": lambda fs: fs.read_bytes("/dir/pipe"),
    "read a dangling link": lambda fs: fs.read_bytes("/dir/dangling"),
    "read a link loop": lambda fs: fs.read_bytes("/dir/loop"),
    "read /proc": lambda fs: fs.read_bytes("/proc/self/status"),
    "read /dev": lambda fs: fs.read_bytes("/dev/null"),
    "read over the limit": lambda fs: fs.read_bytes("/dir/a.txt", 99),
    "read at the limit": lambda fs: fs.read_bytes("/dir/a.txt", 100),
    # listing
    "list depth 0": lambda fs: fs.list_dir("/dir", 0),
    "list depth 1": lambda fs: fs.list_dir("/dir", 1),
    "list the root, depth 2": lambda fs: fs.list_dir("/", 2),
    "list depth beyond 64": lambda fs: fs.list_dir("/", 10**9),
    "list relative": lambda fs: fs.list_dir("sub", 3),
    "list through a link": lambda fs: fs.list_dir("/dir/link_abs", 1),
    "list an empty dir": lambda fs: fs.list_dir("/empty", 1),
    "list a file": lambda fs: fs.list_dir("/dir/a.txt", 1),
    "list a missing dir": lambda fs: fs.list_dir("/nope", 1),
    "list under a missing dir": lambda fs: fs.list_dir("/nope/deeper", 1),
    # mkdir
    "mkdir": lambda fs: fresh_entries(fs.mkdir("/new")),
    "mkdir with parents": lambda fs: fresh_entries(fs.mkdir("/n1/n2/n3")),
    "mkdir relative": lambda fs: fresh_entries(fs.mkdir("made")),
    "mkdir through ..": lambda fs: fresh_entries(fs.mkdir("/dir/b/../up")),
    "mkdir an existing dir": lambda fs: fs.mkdir("/dir"),
    "mkdir over a file": lambda fs: fs.mkdir("/dir/a.txt"),
    "mkdir the root": lambda fs: fs.mkdir("/"),
    "mkdir through a file": lambda fs: fs.mkdir("/dir/a.txt/x"),
    "mkdir in /proc": lambda fs: fs.mkdir("/proc/wrenn-test"),
    # remove
    "remove a file": lambda fs: fs.remove("/dir/a.txt"),
    "remove a tree": lambda fs: fs.remove("/root"),
    "remove a link, not its target": lambda fs: fs.remove("/dir/link_abs"),
    "remove a dangling link": lambda fs: fs.remove("/dir/dangling"),
    "remove a missing path": lambda fs: fs.remove("/dir/nope"),
    "remove under a missing dir": lambda fs: fs.remove("/nope/x"),
    "remove the root": lambda fs: fs.remove("/"),
    "remove the root through ..": lambda fs: fs.remove("/dir/../.."),
    "remove in /proc": lambda fs: fs.remove("/proc/self"),
    # write_bytes
    "write a new file": lambda fs: fs.write_bytes("new.txt", b"new"),
    "write keeps the mode": lambda fs: fs.write_bytes("notes.txt", b"replaced"),
    "write with parents": lambda fs: fs.write_bytes("/w1/w2/f", b"deep"),
    "write through a link": lambda fs: fs.write_bytes("/dir/link_file", b"via"),
    "write a dangling link": lambda fs: fs.write_bytes("/dir/dangling", b"made"),
    "write empty": lambda fs: fs.write_bytes("/dir/a.txt", b""),
    "write big": lambda fs: fs.write_bytes("/big", b"z" * (CHUNK_BYTES + 7)),
    "write onto a dir": lambda fs: fs.write_bytes("/dir", b"x"),
    "write onto the root": lambda fs: fs.write_bytes("/", b"x"),
    "write through a file": lambda fs: fs.write_bytes("/dir/a.txt/x", b"x"),
    "write in /proc": lambda fs: fs.write_bytes("/proc/wrenn-test", b"x"),
    "write in /dev": lambda fs: fs.write_bytes("/dev/wrenn-test", b"x"),
}


@needs_root
@pytest.mark.parametrize("name", list(CASES))
def test_the_same_request_gets_the_same_answer(name: str, capsule: Capsule) -> None:
    host, vm = run_both(capsule, CASES[name])
    assert vm == host


@needs_root
def test_the_table_reaches_every_kind_of_entry_and_error(capsule: Capsule) -> None:
    # Guards the table itself: what its cases compare is not trivially alike.
    (listing, _), _ = run_both(capsule, CASES["list depth 1"])
    kinds = {(e["name"], e["type"], e.get("symlink_target")) for e in listing[1]}
    assert ("link_file", "file", "/dir/a.txt") in kinds
    assert ("link_abs", "directory", "/dir/b") in kinds
    assert ("dangling", "symlink", "missing") in kinds
    assert ("loop", "symlink", "loop") in kinds
    assert ("pipe", "unknown", None) in kinds
    entry = next(e for e in listing[1] if e["name"] == "run.sh")
    assert (entry["permissions"], entry["mode"]) == ("-rwsr-xr-x", 0o4755)
    assert (entry["owner"], entry["group"]) == ("root", "root")
    assert entry["modified_at"] == MTIME_NS // 10**9 + 1  # the float's rounding
    (deepest, _), _ = run_both(capsule, CASES["list depth beyond 64"])
    assert max(e["path"].count("/") for e in deepest[1]) == 64
    statuses = set()
    for case in ("empty path", "read a missing file", "read /proc", "read over the limit",
                 "mkdir the root"):  # fmt: skip
        (result, _), _ = run_both(capsule, CASES[case])
        statuses.add(result[1][1:])
    assert statuses == {(400, "invalid_request"), (502, "agent_error"), (403, "forbidden"),
                        (413, "too_large"), (409, "conflict")}  # fmt: skip


@needs_root
def test_an_aborted_upload_leaves_nothing(capsule: Capsule) -> None:
    def case(fs: CapsuleFiles) -> None:
        w = fs.writer("/dir/a.txt")
        w.write(b"partial")
        w.abort()
        w.abort()  # idempotent
        fresh = fs.writer("/dir/new")
        fresh.write(b"half")
        fresh.abort()

    host, vm = run_both(capsule, case)
    assert vm == host
    assert not [row for row in vm[1] if ".wrenn-upload-" in row[0]]
    assert ("dir/a.txt", stat.S_IFREG | 0o644, b"a" * 100, None) in vm[1]


@needs_root
def test_a_committed_upload_appears_whole_and_abort_is_then_a_no_op(capsule: Capsule) -> None:
    build_tree(capsule.root)
    w = capsule.vm().writer("notes.txt")
    w.write(b"one ")
    # Not at the path until the commit: the old file is still whole there.
    notes = capsule.root / "root/notes.txt"
    assert notes.read_bytes() == b"hello notes"
    w.write(b"two")
    w.commit()
    w.abort()
    assert notes.read_bytes() == b"one two"
    assert stat.S_IMODE(notes.stat().st_mode) == 0o640
    assert sorted(os.listdir(capsule.root / "root")) == ["notes.txt", "sub"]


class CountingFiles(GuestFiles):
    def __init__(self, files: GuestFiles) -> None:
        super().__init__(files._channel)
        self.reads = 0

    def _call(self, op: str, path: str, **fields: Any) -> dict[str, Any]:
        self.reads += op == "read_file"
        return super()._call(op, path, **fields)


def test_a_streamed_read_holds_one_chunk_at_a_time(files: GuestFiles, tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK_BYTES + 123)
    (tmp_path / "f").write_bytes(data)
    counting = CountingFiles(files)
    reader = VmCapsuleFiles(counting).open_read(str(tmp_path / "f"))
    assert counting.reads == 1  # opened: the first chunk only
    got = [reader.read(64 * 1024) for _ in range(16)]
    assert counting.reads == 1 and b"".join(got) == data[:CHUNK_BYTES]
    while chunk := reader.read(64 * 1024):
        got.append(chunk)
    assert b"".join(got) == data and counting.reads == 3  # the short last one says eof
    assert reader.read(10) == b""
    reader.close()
    host = CapsuleFS(lambda: os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)).open_read("/f")
    try:
        assert host.read(len(data) + 1) == data and host.read(1) == b""
    finally:
        host.close()
    with pytest.raises(FsError, match="is a directory"):
        VmCapsuleFiles(files).open_read(str(tmp_path))


def test_a_broken_channel_is_a_502_agent_error(tmp_path: Path) -> None:
    host, guest = socket.socketpair()
    guest.close()  # the guest is gone: the channel breaks at once
    channel = AgentChannel(host)
    vm = VmCapsuleFiles(GuestFiles(channel))
    try:
        for call in (
            lambda: vm.read_bytes(str(tmp_path)),
            lambda: vm.list_dir(str(tmp_path), 1),
            lambda: vm.mkdir(f"{tmp_path}/x"),
        ):
            with pytest.raises(FsError) as caught:
                call()
            assert (caught.value.status, caught.value.code) == (502, "agent_error")
            assert caught.value.message.startswith(f"stat {tmp_path}")  # the first request
    finally:
        channel.close()
    assert not (tmp_path / "x").exists()


# where a backend's files come from -----------------------------------------------
class _GuestBacked(_Minimal):
    kind = "guest-backed"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.own_files = object()

    def guest_files(self) -> Any:
        return self.own_files


class _HostBacked(_Minimal):
    kind = "host-backed"
    CAPABILITIES = Capabilities(
        isolated=False,
        host_filesystem=True,
        memory_snapshots=False,
        limits=False,
        precheck_exec=False,
    )

    def open_root(self) -> int:
        return os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)


def boot_with(cls: type[_Minimal], state: Path) -> tuple[Live, _Minimal]:
    made: list[_Minimal] = []

    def sandbox(capsule_id: str, capsule_dir: Path, *rest: Any) -> _Minimal:
        made.append(cls(capsule_id, capsule_dir, None))
        return made[0]

    manager = Manager(state, SimpleNamespace(maps_root=False, sandbox=sandbox))  # type: ignore[arg-type]
    try:
        live = asyncio.run(manager.boot("cl-files"))
    finally:
        manager.store.close()
    return live, made[0]


def test_boot_gives_a_backend_without_host_files_its_own_files(tmp_path: Path) -> None:
    live, sandbox = boot_with(_GuestBacked, tmp_path / "guest")
    assert live.fs is sandbox.own_files  # type: ignore[attr-defined]
    live, sandbox = boot_with(_HostBacked, tmp_path / "host")
    assert isinstance(live.fs, CapsuleFS)
    with pytest.raises(Unsupported, match="no files of its own"):
        _Minimal("cl-min", tmp_path, None).guest_files()


def test_the_exec_precheck_refuses_a_backend_without_host_files(tmp_path: Path) -> None:
    class Claims(_GuestBacked):
        CAPABILITIES = Capabilities(
            isolated=True,
            host_filesystem=False,
            memory_snapshots=False,
            limits=False,
            precheck_exec=True,
        )

    sandbox = Claims("cl-claims", tmp_path, None)
    live = Live(sandbox, sandbox.guest_files())
    with pytest.raises(TypeError, match="precheck_exec without a host filesystem"):
        Manager._precheck(live, "sh", {}, "/")


class VanishingFiles(GuestFiles):
    """Directories named ``gone`` vanish between the resolve and their listing."""

    def __init__(self, files: GuestFiles) -> None:
        super().__init__(files._channel)

    def list_dir(self, path: str) -> list[GuestEntry]:
        if path.endswith("/gone"):
            raise AgentError("agent list_dir: FileNotFoundError", errno.ENOENT)
        return super().list_dir(path)


def test_a_directory_that_vanishes_fails_at_the_top_and_is_skipped_below(
    files: GuestFiles, tmp_path: Path
) -> None:
    (tmp_path / "gone").mkdir()
    (tmp_path / "kept").mkdir()
    vm = VmCapsuleFiles(VanishingFiles(files))
    with pytest.raises(FsError) as caught:
        vm.list_dir(f"{tmp_path}/gone", 1)
    assert (caught.value.message, caught.value.status) == (
        f"list {tmp_path}/gone: no such file or directory",
        502,
    )
    listing = vm.list_dir(str(tmp_path), 2)
    assert [e["name"] for e in listing] == ["gone", "kept"]
