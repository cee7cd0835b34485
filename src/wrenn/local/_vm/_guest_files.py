"""Files inside a microVM, through its agent: read, write, stat, list, mkdir, remove,
resolve and rename.

Paths are the guest's own: they are sent as given and resolved by the guest
agent in the guest's filesystem, never looked at against the host's (no
``pathlib``, no ``os.path`` here).  Data moves in chunks of ``CHUNK_BYTES`` per
request, so a large file needs no large frame and ``iter_read`` holds one chunk
at a time.  Every answer is checked like an exec's: the guest is hostile, so a
chunk longer than asked, a bad type or a listing past the cap is an
``AgentError``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ._agent import AgentChannel, AgentError, decode_base64, field

# File data per request, each way (base64 in the frame: 4/3 of it).
CHUNK_BYTES = 1024 * 1024
# read_bytes() holds the whole file; iter_read() streams larger ones.
MAX_READ_BYTES = 100 * 1024 * 1024
# Entries one list_dir answer may carry, and a whole listing.
LIST_PAGE = 1000
MAX_LIST_ENTRIES = 100_000
# A guest path, in characters (Linux's PATH_MAX is 4096 bytes).
_MAX_PATH = 4096
# An owner or group name from the guest, in characters.
_MAX_NAME = 256
_KINDS = frozenset({"file", "dir", "symlink", "other"})


@dataclass(frozen=True)
class GuestEntry:
    name: str
    type: str  # file, dir, symlink or other
    size: int
    mode: int  # permission bits
    mtime_ns: int
    target: str | None = None  # a symlink's
    # Whole st_mode (type bits too) and owner names: None from an older agent.
    st_mode: int | None = None
    owner: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class GuestResolved:
    path: str  # absolute, resolved in the guest
    entry: GuestEntry | None  # None: the final component is missing


class GuestFiles:
    def __init__(self, channel: AgentChannel, timeout: float = 30.0) -> None:
        self._channel = channel
        self._timeout = timeout  # per request (one chunk, one page)

    def iter_read(self, path: str, *, offset: int = 0) -> Iterator[bytes]:
        """The file from ``offset`` on, one chunk of at most CHUNK_BYTES at a time.

        No total limit here (a guest can make a file grow as it is read): the
        consumer stops when it has enough, as ``read_bytes`` does.
        """
        while True:
            answer = self._call("read_file", path, offset=offset, length=CHUNK_BYTES)
            data, longer = decode_base64(
                field(answer, "data", str, "read_file"), CHUNK_BYTES, "read_file"
            )
            if longer:
                raise AgentError(f"agent read_file: a chunk over {CHUNK_BYTES} bytes")
            eof = field(answer, "eof", bool, "read_file")
            if data:
                yield data
                offset += len(data)
            if eof or not data:
                return

    def read_bytes(self, path: str, limit: int = MAX_READ_BYTES) -> bytes:
        """The whole file; AgentError if it is longer than ``limit``."""
        parts: list[bytes] = []
        total = 0
        for chunk in self.iter_read(path):
            total += len(chunk)
            if total > limit:
                raise AgentError(f"agent read_file: {path!r} is over {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    def write_bytes(self, path: str, data: bytes | Iterable[bytes], mode: int = 0o644) -> int:
        """Create or replace the file with ``data``; its size in the guest."""
        chunks = _rechunk([data] if isinstance(data, bytes | bytearray) else data)
        offset, size, first = 0, 0, True
        for chunk in chunks:
            if not chunk and not first:
                continue
            size = self.write_at(path, offset, chunk, truncate=first, mode=mode)
            offset += len(chunk)
            first = False
        return size

    def write_at(
        self, path: str, offset: int, data: bytes, *, truncate: bool = False, mode: int = 0o644
    ) -> int:
        """Write ``data`` (at most CHUNK_BYTES) at ``offset``, creating the file
        with ``mode`` if needed (``truncate``: emptied first); its size in the guest."""
        if len(data) > CHUNK_BYTES:
            raise ValueError(f"write_at takes at most {CHUNK_BYTES} bytes")
        answer = self._call(
            "write_file",
            path,
            offset=offset,
            data=base64.b64encode(data).decode(),
            truncate=truncate,
            mode=mode,
        )
        return int(field(answer, "size", int, "write_file"))

    def stat(self, path: str) -> GuestEntry:
        return _entry(self._call("stat", path), "stat")

    def list_dir(self, path: str) -> list[GuestEntry]:
        """The directory's entries (not recursive), sorted by name."""
        entries: list[GuestEntry] = []
        while True:
            answer = self._call("list_dir", path, offset=len(entries), limit=LIST_PAGE)
            page = field(answer, "entries", list, "list_dir")
            total = field(answer, "total", int, "list_dir")
            if len(page) > LIST_PAGE or total > MAX_LIST_ENTRIES:
                raise AgentError(f"agent list_dir: {path!r} has over {MAX_LIST_ENTRIES} entries")
            entries.extend(_entry(item, "list_dir") for item in page)
            if not page or len(entries) >= total:
                return entries

    def mkdir(self, path: str, *, parents: bool = False, mode: int = 0o777) -> None:
        self._call("mkdir", path, parents=parents, mode=mode)

    def resolve(
        self, path: str, *, follow: bool = True, create_parents: bool = False
    ) -> GuestResolved:
        """Where an absolute ``path`` leads, by the server's rules (the agent's
        ``_resolve``); an error with ``errno`` when a parent is missing or no
        directory, or there are too many links."""
        answer = self._call("resolve", path, follow=follow, create_parents=create_parents)
        resolved = field(answer, "path", str, "resolve")
        if not resolved.startswith("/") or "\0" in resolved or len(resolved) > _MAX_PATH:
            raise AgentError("agent resolve: bad answer, not an absolute guest path")
        item = answer.get("entry")
        return GuestResolved(resolved, None if item is None else _entry(item, "resolve"))

    def rename(self, path: str, target: str, *, mode: int | None = None) -> None:
        """Move ``path`` over ``target`` (same directory), first chmod'ed to ``mode``."""
        _check_path("rename", target)
        self._call("rename", path, target=target, mode=mode)

    def remove(self, path: str, *, recursive: bool = False) -> None:
        self._call("remove", path, recursive=recursive)

    def _call(self, op: str, path: str, **fields: Any) -> dict[str, Any]:
        _check_path(op, path)
        return self._channel.request({"op": op, "path": path, **fields}, self._timeout)


def _check_path(op: str, path: str) -> None:
    if not isinstance(path, str) or not path or "\0" in path or len(path) > _MAX_PATH:
        raise AgentError(f"agent {op}: not a guest path: {str(path)[:100]!r}")


def _rechunk(parts: Iterable[bytes]) -> Iterator[bytes]:
    """The data in slices of at most CHUNK_BYTES (always at least one, maybe empty)."""
    sent = False
    for part in parts:
        view = memoryview(part)
        for start in range(0, len(view), CHUNK_BYTES):
            sent = True
            yield bytes(view[start : start + CHUNK_BYTES])
    if not sent:
        yield b""


def _entry(item: Any, op: str) -> GuestEntry:
    if not isinstance(item, dict):
        raise AgentError(f"agent {op}: bad answer, an entry is not an object")
    kind = field(item, "type", str, op)
    if kind not in _KINDS:
        raise AgentError(f"agent {op}: bad answer, unknown entry type {kind[:40]!r}")
    target = item.get("target")
    if target is not None and not isinstance(target, str):
        raise AgentError(f"agent {op}: bad answer, 'target' is not a str")
    st_mode = item.get("st_mode")
    if st_mode is not None and (
        not isinstance(st_mode, int) or isinstance(st_mode, bool) or not 0 <= st_mode <= 0o177777
    ):
        raise AgentError(f"agent {op}: bad answer, 'st_mode' is not a file mode")
    names = {key: item.get(key) for key in ("owner", "group")}
    for key, name in names.items():
        if name is not None and (not isinstance(name, str) or len(name) > _MAX_NAME):
            raise AgentError(f"agent {op}: bad answer, {key!r} is not a name")
    return GuestEntry(
        name=field(item, "name", str, op),
        type=kind,
        size=field(item, "size", int, op),
        mode=field(item, "mode", int, op),
        mtime_ns=field(item, "mtime_ns", int, op),
        target=target,
        st_mode=st_mode,
        owner=names["owner"],
        group=names["group"],
    )
