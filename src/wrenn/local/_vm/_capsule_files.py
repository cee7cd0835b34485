"""A microVM capsule's files API: ``CapsuleFiles`` over its guest agent.

Users reach a VM capsule's files through the same HTTP routes as a host
capsule's, so ``VmCapsuleFiles`` answers like ``_fs.CapsuleFS`` for the same
request: paths resolve by the same rules (the agent's ``resolve`` op walks them
as ``CapsuleFS.resolve`` does: ``..`` pops, 40 links, only the final component
may be missing), and every check happens in the same order with the same
``FsError``.  An agent failure that carries an errno becomes the message the host
side builds from the same errno; any other (a broken channel, a timeout, a bad
answer) is the 502 ``agent_error`` of an unexpected ``OSError``.

Everything here is inside the guest, so no check guards the host: a link planted
by capsule code leads into the guest's own files, and a race between a resolve
and the next request only changes what capsule code already controls.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .._files import PSEUDO_TOP, CapsuleFiles, FsError, capsule_path, entry_json
from .._fs import MAX_LIST_DEPTH, MAX_READ_BYTES
from ._agent import AgentError
from ._guest_files import CHUNK_BYTES, GuestEntry, GuestFiles, GuestResolved


def _failed(op: str, path: str, exc: AgentError) -> FsError:
    """As ``_fs._oserror`` words the same errno; else the agent's own reason."""
    if exc.errno is not None:
        return FsError(f"{op} {path}: {os.strerror(exc.errno).lower()}")
    return FsError(f"{op} {path}: {exc}")


def _top(resolved: str) -> str | None:
    """The first component of a resolved path (None for the root)."""
    return resolved.split("/")[1] or None


def _modified_at(mtime_ns: int) -> int:
    # What int(os.stat_result.st_mtime) gives: CPython builds the float as
    # sec + nsec * 1e-9, which can round up to the next second.
    sec, nsec = divmod(mtime_ns, 10**9)
    return int(sec + nsec * 1e-9)


class VmCapsuleFiles:
    def __init__(self, files: GuestFiles, home: str = "/root") -> None:
        self._files = files
        self._home = home

    def _resolve(
        self, path: str, *, follow: bool = True, create_parents: bool = False
    ) -> GuestResolved:
        absolute = capsule_path(path, self._home)
        try:
            return self._files.resolve(absolute, follow=follow, create_parents=create_parents)
        except AgentError as exc:
            raise _failed("stat", path, exc) from None

    @staticmethod
    def _check_writable(r: GuestResolved, op: str, path: str) -> None:
        if _top(r.path) in PSEUDO_TOP:
            raise FsError(f"{op} {path}: permission denied")

    # reading ------------------------------------------------------------------
    def _readable(self, path: str) -> GuestResolved:
        r = self._resolve(path)
        if r.entry is None:
            raise FsError(f"open {path}: no such file or directory")
        if r.path == "/" or r.entry.type == "dir":
            raise FsError(f"read {path}: is a directory")
        if _top(r.path) in PSEUDO_TOP:
            raise FsError(
                f"read {path}: files under /proc, /sys and /dev cannot be read", 403, "forbidden"
            )
        if r.entry.type != "file":
            raise FsError(f"read {path}: not a regular file")
        return r

    def open_read(self, path: str) -> _GuestReader:
        r = self._readable(path)
        chunks = self._files.iter_read(r.path)
        # The first chunk now, so a file that cannot be opened fails here, as on a host.
        try:
            first = next(chunks, b"")
        except AgentError as exc:
            raise _failed("open", path, exc) from None
        return _GuestReader(chunks, first, path)

    def read_bytes(self, path: str, limit: int = MAX_READ_BYTES) -> bytes:
        """The whole file, refused with 413 when larger than ``limit`` bytes."""
        r = self._readable(path)
        assert r.entry is not None
        too_large = FsError(
            f"file exceeds {limit // (1024 * 1024)} MB limit (use files/stream/read)",
            413,
            "too_large",
        )
        if r.entry.size > limit:
            raise too_large
        parts: list[bytes] = []
        total = 0
        try:
            for chunk in self._files.iter_read(r.path):
                total += len(chunk)
                if total > limit:  # it grew while it was read
                    raise too_large
                parts.append(chunk)
        except AgentError as exc:
            raise _failed("read", path, exc) from None
        return b"".join(parts)

    # writing ------------------------------------------------------------------
    def writer(self, path: str) -> _GuestWriter:
        r = self._resolve(path, create_parents=True)
        self._check_writable(r, "write", path)
        if r.path == "/" or (r.entry is not None and r.entry.type == "dir"):
            raise FsError(f"write {path}: is a directory")
        return _GuestWriter(self._files, r, path)

    def write_bytes(self, path: str, data: bytes) -> None:
        w = self.writer(path)
        try:
            w.write(data)
            w.commit()
        finally:
            w.abort()

    def mkdir(self, path: str) -> dict[str, Any]:
        r = self._resolve(path, create_parents=True)
        self._check_writable(r, "mkdir", path)
        if r.entry is not None or r.path == "/":
            raise FsError(f"mkdir {path}: directory already exists", 409, "conflict")
        try:
            self._files.mkdir(r.path, mode=0o755)
            made = self._files.stat(r.path)
        except AgentError as exc:
            if exc.errno == errno.EEXIST:  # made since the resolve
                raise FsError(f"mkdir {path}: directory already exists", 409, "conflict") from None
            raise _failed("mkdir", path, exc) from None
        return self._entry(made.name, r.path, made, None, "mkdir", path)

    def remove(self, path: str) -> None:
        r = self._resolve(path, follow=False)
        if r.entry is None:
            raise FsError(f"remove {path}: no such file or directory")
        if r.path == "/":
            raise FsError(f"remove {path}: refusing to remove the capsule root")
        self._check_writable(r, "remove", path)
        try:
            self._files.remove(r.path, recursive=True)
        except AgentError as exc:
            raise _failed("remove", path, exc) from None

    # listing ------------------------------------------------------------------
    def list_dir(self, path: str, depth: int) -> list[dict[str, Any]]:
        depth = min(max(depth, 1), MAX_LIST_DEPTH)  # envd treats 0 like 1
        r = self._resolve(path)
        if r.entry is None:
            raise FsError(f"list {path}: no such file or directory")
        if r.entry.type != "dir":
            raise FsError(f"list {path}: not a directory")
        out: list[dict[str, Any]] = []
        self._list_into(out, r.path.rstrip("/"), 1, depth, path)
        return out

    def _list_into(
        self, out: list[dict[str, Any]], base: str, level: int, depth: int, asked: str
    ) -> None:
        try:
            entries = self._files.list_dir(base or "/")
        except AgentError as exc:
            # The listed directory itself fails like the host's open of it; one
            # below it (gone or unreadable) is skipped, as the host's walk does.
            # Without an errno it is the channel, never skipped.
            if level == 1 or exc.errno is None:
                raise _failed("list", asked, exc) from None
            return
        for item in entries:
            child = f"{base}/{item.name}"
            shown, target = item, None
            if item.type == "symlink":
                # Report what the link points at, resolved inside the capsule.
                try:
                    tr = self._files.resolve(child)
                except AgentError as exc:
                    if exc.errno is None:
                        raise _failed("list", asked, exc) from None
                else:
                    if tr.entry is not None:
                        shown, target = tr.entry, tr.path
                if target is None:
                    target = item.target
            out.append(self._entry(item.name, child, shown, target, "list", asked))
            if item.type == "dir" and level < depth:
                self._list_into(out, child, level + 1, depth, asked)

    @staticmethod
    def _entry(
        name: str, path: str, e: GuestEntry, target: str | None, op: str, asked: str
    ) -> dict[str, Any]:
        if e.st_mode is None or e.owner is None or e.group is None:
            raise FsError(f"{op} {asked}: the guest agent is too old (no st_mode or owner)")
        return entry_json(
            name,
            path,
            st_mode=e.st_mode,
            size=e.size,
            owner=e.owner,
            group=e.group,
            modified_at=_modified_at(e.mtime_ns),
            target=target,
        )


class _GuestReader:
    """Streams a guest file: one agent chunk (at most CHUNK_BYTES) held at a time."""

    def __init__(self, chunks: Iterator[bytes], first: bytes, path: str) -> None:
        self._chunks: Iterator[bytes] | None = chunks
        self._held = memoryview(first)
        self._path = path

    def read(self, size: int) -> bytes:
        if not self._held:
            if self._chunks is None:
                return b""
            try:
                self._held = memoryview(next(self._chunks, b""))
            except AgentError as exc:
                raise _failed("read", self._path, exc) from None
            if not self._held:
                self._chunks = None
                return b""
        part, self._held = self._held[:size], self._held[size:]
        return bytes(part)

    def close(self) -> None:
        # No guest state to release: every read_file request stands alone.
        self._chunks = None
        self._held = memoryview(b"")


class _GuestWriter:
    """Writes a temp file beside the target in the guest and renames it over the
    target on commit, as ``_fs._Writer`` does on a host."""

    def __init__(self, files: GuestFiles, r: GuestResolved, path: str) -> None:
        self._files = files
        self._r = r
        self._path = path
        parent = r.path.rsplit("/", 1)[0]
        self._tmp = f"{parent}/.wrenn-upload-{secrets.token_hex(6)}"
        try:
            files.write_at(self._tmp, 0, b"", truncate=True, mode=0o644)
        except AgentError as exc:
            raise _failed("write", path, exc) from None
        self.size = 0

    def write(self, data: bytes) -> None:
        assert self._tmp, "write after commit or abort"
        view = memoryview(data)
        try:
            for start in range(0, len(view), CHUNK_BYTES):
                piece = bytes(view[start : start + CHUNK_BYTES])
                self._files.write_at(self._tmp, self.size, piece)
                self.size += len(piece)
        except AgentError as exc:
            raise _failed("write", self._path, exc) from None

    def commit(self) -> None:
        entry = self._r.entry
        # An existing regular file keeps its permission bits.
        mode = entry.mode if entry is not None and entry.type == "file" else None
        try:
            self._files.rename(self._tmp, self._r.path, mode=mode)
        except AgentError as exc:
            raise _failed("write", self._path, exc) from None
        self._tmp = ""

    def abort(self) -> None:
        """Idempotent cleanup; after a successful commit it does nothing."""
        if self._tmp:
            tmp, self._tmp = self._tmp, ""
            with contextlib.suppress(AgentError):
                self._files.remove(tmp)


if TYPE_CHECKING:
    # Sandbox.guest_files() is typed Any, so mypy checks the protocol here.
    _IMPLEMENTS: type[CapsuleFiles] = VmCapsuleFiles
