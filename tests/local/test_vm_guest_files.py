"""Files through the agent without QEMU: the real guest agent over a socketpair
(its "guest filesystem" is a temporary directory here), and hostile answers."""

from __future__ import annotations

import base64
import errno
import json
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from wrenn.local._vm import _guest_files
from wrenn.local._vm._agent import AgentChannel, AgentError
from wrenn.local._vm._guest_files import CHUNK_BYTES, GuestFiles


def test_write_read_stat_list_remove(files: GuestFiles, tmp_path: Path) -> None:
    folder = f"{tmp_path}/a/b"
    files.mkdir(folder, parents=True)
    data = os.urandom(2 * CHUNK_BYTES + 12345)  # three chunks, the last one short
    assert files.write_bytes(f"{folder}/f.bin", data, mode=0o600) == len(data)
    assert (tmp_path / "a/b/f.bin").read_bytes() == data
    assert files.read_bytes(f"{folder}/f.bin") == data
    assert [len(c) for c in files.iter_read(f"{folder}/f.bin")] == [CHUNK_BYTES] * 2 + [12345]
    entry = files.stat(f"{folder}/f.bin")
    assert (entry.name, entry.type, entry.size, entry.mode) == ("f.bin", "file", len(data), 0o600)
    os.symlink("f.bin", tmp_path / "a/b/link")
    listing = files.list_dir(folder)
    assert [(e.name, e.type, e.target) for e in listing] == [
        ("f.bin", "file", None),
        ("link", "symlink", "f.bin"),
    ]
    # Rewriting replaces the whole file (a shorter one leaves no tail), empty too.
    assert files.write_bytes(f"{folder}/f.bin", [b"ab", b"cd"]) == 4
    assert files.read_bytes(f"{folder}/f.bin") == b"abcd"
    assert files.write_bytes(f"{folder}/f.bin", b"") == 0
    assert files.read_bytes(f"{folder}/f.bin") == b""
    files.write_bytes(f"{folder}/f.bin", b"abcd")
    with pytest.raises(AgentError, match="over 3 bytes"):
        files.read_bytes(f"{folder}/f.bin", limit=3)
    with pytest.raises(AgentError, match="OSError"):  # not empty
        files.remove(f"{tmp_path}/a")
    files.remove(f"{tmp_path}/a", recursive=True)
    with pytest.raises(AgentError, match="FileNotFoundError"):
        files.stat(folder)


def test_only_regular_files_are_read_and_a_fifo_never_blocks(
    files: GuestFiles, tmp_path: Path
) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(AgentError, match="not a regular file"):
        files.read_bytes(str(tmp_path / "pipe"))
    with pytest.raises(AgentError, match="No such device or address"):
        files.write_bytes(str(tmp_path / "pipe"), b"x")
    with pytest.raises(AgentError, match="not a regular file"):
        files.read_bytes(str(tmp_path))


def test_a_listing_comes_in_pages(
    files: GuestFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_guest_files, "LIST_PAGE", 7)
    for index in range(20):
        (tmp_path / f"n{index:02}").write_bytes(b"x" * index)
    listing = files.list_dir(str(tmp_path))
    assert [(e.name, e.size) for e in listing] == [(f"n{i:02}", i) for i in range(20)]


def test_paths_are_checked_not_resolved_on_the_host(files: GuestFiles) -> None:
    for bad in ("", "a\0b", "x" * 5000):
        with pytest.raises(AgentError, match="not a guest path"):
            files.stat(bad)


_FILE = {"name": "f", "type": "file", "size": 0, "mode": 0, "mtime_ns": 0}


def _hostile_files(answer: dict[str, object]) -> tuple[GuestFiles, Callable[[], None]]:
    """Files over an agent that answers every request with ``answer``; and a closer."""
    host, guest = socket.socketpair()
    channel = AgentChannel(host)

    def close() -> None:
        channel.close()
        guest.close()

    def serve() -> None:
        try:
            with guest.makefile("rb") as lines:
                for line in lines:
                    request = json.loads(line)
                    guest.sendall(
                        json.dumps({"id": request["id"], "ok": True, **answer}).encode() + b"\n"
                    )
        except OSError:
            pass

    threading.Thread(target=serve, daemon=True).start()
    return GuestFiles(channel, timeout=5.0), close


@pytest.mark.parametrize(
    ("op", "answer", "error"),
    [
        (
            "read",
            {"data": base64.b64encode(bytes(CHUNK_BYTES + 1)).decode(), "eof": True},
            "a chunk over",
        ),
        ("read", {"data": 7, "eof": True}, "'data' is not a str"),
        ("read", {"data": "", "eof": "yes"}, "'eof' is not a bool"),
        ("write", {"size": "3"}, "'size' is not a int"),
        (
            "stat",
            {"name": "f", "type": "socket!", "size": 0, "mode": 0, "mtime_ns": 0},
            "unknown entry type",
        ),
        ("stat", {"name": "f", "type": "file", "mode": 0, "mtime_ns": 0}, "'size' is not a int"),
        (
            "stat",
            {"name": "f", "type": "symlink", "size": 0, "mode": 0, "mtime_ns": 0, "target": 1},
            "'target'",
        ),
        ("list", {"entries": [1], "total": 1}, "an entry is not an object"),
        ("list", {"entries": {}, "total": 1}, "'entries' is not a list"),
        ("list", {"entries": [], "total": 10**9}, "over 100000 entries"),
        ("stat", {**_FILE, "st_mode": -1}, "'st_mode' is not a file mode"),
        ("stat", {**_FILE, "st_mode": 1 << 40}, "'st_mode' is not a file mode"),
        ("stat", {**_FILE, "st_mode": True}, "'st_mode' is not a file mode"),
        ("stat", {**_FILE, "owner": "x" * 257}, "'owner' is not a name"),
        ("stat", {**_FILE, "group": 0}, "'group' is not a name"),
        ("resolve", {"path": 5, "entry": None}, "'path' is not a str"),
        ("resolve", {"path": "etc/passwd", "entry": None}, "not an absolute guest path"),
        ("resolve", {"path": "/a\0b", "entry": None}, "not an absolute guest path"),
        ("resolve", {"path": "/" + "x" * 5000, "entry": None}, "not an absolute guest path"),
        ("resolve", {"path": "/f", "entry": 3}, "an entry is not an object"),
    ],
)
def test_a_hostile_files_answer_is_an_agent_error(
    op: str, answer: dict[str, object], error: str
) -> None:
    files, close = _hostile_files(answer)
    try:
        with pytest.raises(AgentError, match=error):
            if op == "read":
                files.read_bytes("/f")
            elif op == "write":
                files.write_bytes("/f", b"abc")
            elif op == "stat":
                files.stat("/f")
            elif op == "resolve":
                files.resolve("/f")
            else:
                files.list_dir("/")
    finally:
        close()


def test_a_guest_that_never_ends_a_file_is_stopped_by_the_read_limit() -> None:
    # Full chunks and never eof: read_bytes stops at its limit, not at memory's.
    chunk = base64.b64encode(bytes(CHUNK_BYTES)).decode()
    files, close = _hostile_files({"data": chunk, "eof": False})
    try:
        with pytest.raises(AgentError, match=f"over {3 * CHUNK_BYTES} bytes"):
            files.read_bytes("/dev/zero", limit=3 * CHUNK_BYTES)
    finally:
        close()


def test_an_oserror_in_the_guest_carries_its_errno(files: GuestFiles, tmp_path: Path) -> None:
    with pytest.raises(AgentError) as caught:
        files.stat(str(tmp_path / "missing"))
    assert caught.value.errno == errno.ENOENT
    with pytest.raises(AgentError) as caught:
        files.resolve(f"{tmp_path}/missing/deeper")
    assert caught.value.errno == errno.ENOENT
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(AgentError) as caught:
        files.resolve(f"{tmp_path}/f/x")
    assert caught.value.errno == errno.ENOTDIR
    os.symlink("self", tmp_path / "self")
    with pytest.raises(AgentError) as caught:
        files.resolve(f"{tmp_path}/self")
    assert caught.value.errno == errno.ELOOP
    with pytest.raises(AgentError) as caught:  # no OSError: no errno
        files.read_bytes(str(tmp_path))
    assert caught.value.errno is None


@pytest.mark.parametrize("sent", [True, -2, 0, 4096, 10**30, "2", 2.0, None])
def test_an_implausible_errno_is_not_believed(sent: object) -> None:
    files, close = _hostile_files({"ok": False, "error": "OSError: no", "errno": sent})
    try:
        with pytest.raises(AgentError, match="OSError: no") as caught:
            files.stat("/f")
        assert caught.value.errno is None
    finally:
        close()


def test_resolve_follows_the_server_rules_and_rename_moves_with_a_mode(
    files: GuestFiles, tmp_path: Path
) -> None:
    (tmp_path / "d").mkdir()
    os.symlink("d", tmp_path / "link")
    resolved = files.resolve(f"{tmp_path}/link/../link/./new")
    assert (resolved.path, resolved.entry) == (f"{tmp_path}/d/new", None)
    kept = files.resolve(f"{tmp_path}/link", follow=False)
    assert kept.entry is not None and kept.entry.type == "symlink"
    made = files.resolve(f"{tmp_path}/p/q/r", create_parents=True)
    assert made.entry is None and (tmp_path / "p/q").is_dir()
    assert files.resolve("/../..").path == "/"
    files.write_at(f"{tmp_path}/d/tmp", 0, b"data")
    files.rename(f"{tmp_path}/d/tmp", f"{tmp_path}/d/final", mode=0o600)
    assert (tmp_path / "d/final").read_bytes() == b"data"
    assert (tmp_path / "d/final").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "d/tmp").exists()
