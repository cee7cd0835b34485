"""File operations resolved strictly inside a capsule's root.

Capsule paths are never turned into host paths with string operations (a
``normpath`` of ``//root`` once let an upload escape).  Instead every component
is opened relative to a directory fd with ``O_NOFOLLOW``; ``..`` pops our own
stack of fds and never reaches the kernel, and symlinks are read and re-resolved
against the capsule root (the semantics of ``openat2(RESOLVE_IN_ROOT)``).  A
symlink planted by code in the capsule therefore points into the capsule, not
the host.  Writes go to a temp file that is renamed into place, so an existing
hard link is replaced rather than written through.  In the bubblewrap backend the
root fd is ``/proc/<init>/root``, so the read-only host binds stay read-only for
the API too.

Reads are for regular files on real filesystems only.  The server reads with
host privileges, so a capsule link to ``/proc/kmsg`` would otherwise hand out
the host's kernel log (and block a worker thread for good); anything resolving
into ``/proc``, ``/sys`` or ``/dev``, or onto a pseudo filesystem wherever it is
mounted, is refused, and ``files/read`` answers at most ``MAX_READ_BYTES``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import grp
import os
import pwd
import secrets
import stat
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import _fdtree
from ._files import PSEUDO_TOP, capsule_path, entry_json
from ._files import FsError as FsError  # its old home: still importable from here
from ._runtime._ids import SERVER_IDS, Ids

_O_PATH = getattr(os, "O_PATH", os.O_RDONLY)
_DIR_FLAGS = _O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_SYMLINKS = 40
# Pseudo filesystems (PSEUDO_TOP, in _files): the server must neither write there
# (it would act on the host kernel) nor read (procfs files such as kmsg are
# host-wide, and block).
# files/read holds the whole file in memory; larger files go through stream/read.
MAX_READ_BYTES = 100 * 1024 * 1024
# files/list depth beyond this is cut off (every level holds a directory fd).
MAX_LIST_DEPTH = 64
# statfs f_type of filesystems whose files are kernel interfaces, not data:
# proc, sysfs, devpts, debugfs, tracefs, securityfs, cgroup, cgroup2, bpf,
# configfs, pstore, efivarfs, mqueue, binfmt_misc, fusectl, nsfs.
_PSEUDO_FS = frozenset(
    {
        0x9FA0,
        0x62656572,
        0x1CD1,
        0x64626720,
        0x74726163,
        0x73636673,
        0x27E0EB,
        0x63677270,
        0xCAFE4A11,
        0x62656570,
        0x6165676C,
        0xDE5E81E4,
        0x19800202,
        0x42494E4D,
        0x65735543,
        0x6E736673,
    }
)


def _load_fstatfs() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.fstatfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return fn


_FSTATFS = _load_fstatfs()


def fs_type(fd: int) -> int | None:
    """The statfs ``f_type`` of the filesystem holding ``fd`` (None if unknown)."""
    if _FSTATFS is None:
        return None
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    if _FSTATFS(fd, buf) != 0:
        return None
    # f_type is the first member, a C long, on every Linux ABI.
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def _oserror(op: str, path: str, exc: OSError) -> FsError:
    reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
    return FsError(f"{op} {path}: {reason}")


@dataclass
class _Resolved:
    stack: list[tuple[int, str]]  # (dir fd, component); stack[0] is the root
    name: str | None  # final component in stack[-1]; None means the root itself
    st: os.stat_result | None  # lstat of the final component, None if missing
    _closed: bool = field(default=False)

    @property
    def dir_fd(self) -> int:
        return self.stack[-1][0]

    @property
    def path(self) -> str:
        parts = [c for _, c in self.stack[1:]]
        if self.name is not None:
            parts.append(self.name)
        return "/" + "/".join(parts)

    @property
    def top(self) -> str | None:
        if len(self.stack) > 1:
            return self.stack[1][1]
        return self.name

    def close(self) -> None:
        if not self._closed:
            for fd, _ in self.stack:
                os.close(fd)
            self._closed = True

    def __enter__(self) -> _Resolved:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


class CapsuleFS:
    def __init__(
        self, open_root: Callable[[], int], home: str = "/root", *, ids: Ids = SERVER_IDS
    ) -> None:
        self._open_root = open_root
        self._home = home
        # What the server creates becomes the capsule root's (a host uid of its own).
        self.ids = ids

    def _own(self, name: str, dir_fd: int) -> None:
        if self.ids.mapped:
            os.chown(name, self.ids.uid, self.ids.gid, dir_fd=dir_fd, follow_symlinks=False)

    # resolution ---------------------------------------------------------------
    def _absolute(self, path: str) -> str:
        return capsule_path(path, self._home)

    def resolve(
        self, path: str, *, follow_final: bool = True, create_parents: bool = False
    ) -> _Resolved:
        todo = deque(c for c in self._absolute(path).split("/") if c not in ("", "."))
        stack: list[tuple[int, str]] = [(self._open_root(), "")]
        budget = _MAX_SYMLINKS
        try:
            while todo:
                comp = todo.popleft()
                if comp == "..":
                    if len(stack) > 1:
                        os.close(stack.pop()[0])
                    continue
                last = not todo
                dir_fd = stack[-1][0]
                try:
                    st = os.stat(comp, dir_fd=dir_fd, follow_symlinks=False)
                except FileNotFoundError:
                    if last:
                        return _Resolved(stack, comp, None)
                    if not create_parents:
                        raise FsError(f"stat {path}: no such file or directory") from None
                    try:
                        os.mkdir(comp, 0o755, dir_fd=dir_fd)
                        self._own(comp, dir_fd)
                    except FileExistsError:
                        pass
                    todo.appendleft(comp)
                    continue
                if stat.S_ISLNK(st.st_mode) and (follow_final or not last):
                    budget -= 1
                    if budget < 0:
                        raise FsError(f"stat {path}: too many levels of symbolic links")
                    target = os.readlink(comp, dir_fd=dir_fd)
                    if target.startswith("/"):
                        while len(stack) > 1:
                            os.close(stack.pop()[0])
                    todo.extendleft(reversed([c for c in target.split("/") if c not in ("", ".")]))
                    continue
                if last:
                    return _Resolved(stack, comp, st)
                if not stat.S_ISDIR(st.st_mode):
                    raise FsError(f"stat {path}: not a directory")
                try:
                    fd = os.open(comp, _DIR_FLAGS, dir_fd=dir_fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT) and budget > 0:
                        # Swapped for a symlink between stat and open: resolve again.
                        budget -= 1
                        todo.appendleft(comp)
                        continue
                    raise
                stack.append((fd, comp))
            # The path named a directory through the stack itself ("/", "/root/..", ...).
            if len(stack) > 1:
                fd, comp = stack.pop()
                os.close(fd)
                return _Resolved(
                    stack, comp, os.stat(comp, dir_fd=stack[-1][0], follow_symlinks=False)
                )
            return _Resolved(stack, None, os.fstat(stack[0][0]))
        except FsError:
            for fd, _ in stack:
                os.close(fd)
            raise
        except OSError as exc:
            for fd, _ in stack:
                os.close(fd)
            raise _oserror("stat", path, exc) from None

    @staticmethod
    def _check_writable(r: _Resolved, op: str, path: str) -> None:
        if r.top in PSEUDO_TOP:
            raise FsError(f"{op} {path}: permission denied")

    # reading ------------------------------------------------------------------
    def open_read(self, path: str) -> _FdReader:
        """A reader of the regular file at ``path``; the caller closes it."""
        return _FdReader(self._open_fd(path))

    def _open_fd(self, path: str) -> int:
        """An fd of the regular file at ``path``; the caller closes it."""
        with self.resolve(path) as r:
            if r.st is None:
                raise FsError(f"open {path}: no such file or directory")
            if r.name is None or stat.S_ISDIR(r.st.st_mode):
                raise FsError(f"read {path}: is a directory")
            # Checked on the resolved path, so a link planted anywhere in the
            # capsule that leads into /proc, /sys or /dev is refused too.
            if r.top in PSEUDO_TOP:
                raise FsError(
                    f"read {path}: files under /proc, /sys and /dev cannot be read",
                    403,
                    "forbidden",
                )
            if not stat.S_ISREG(r.st.st_mode):
                # Never opened: opening a device or FIFO can block or act.
                raise FsError(f"read {path}: not a regular file")
            try:
                # O_NONBLOCK: a FIFO planted in the capsule must not hang the server.
                fd = os.open(
                    r.name,
                    os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                    dir_fd=r.dir_fd,
                )
            except OSError as exc:
                raise _oserror("open", path, exc) from None
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise FsError(f"read {path}: not a regular file")
            if fs_type(fd) in _PSEUDO_FS:
                os.close(fd)
                raise FsError(
                    f"read {path}: files of kernel pseudo filesystems cannot be read",
                    403,
                    "forbidden",
                )
            os.set_blocking(fd, True)
            return fd

    def read_bytes(self, path: str, limit: int = MAX_READ_BYTES) -> bytes:
        """The whole file, refused with 413 when larger than ``limit`` bytes."""
        fd = self._open_fd(path)
        try:
            too_large = FsError(
                f"file exceeds {limit // (1024 * 1024)} MB limit (use files/stream/read)",
                413,
                "too_large",
            )
            if os.fstat(fd).st_size > limit:
                raise too_large
            chunks = []
            left = limit + 1  # the file may grow while it is read
            while left > 0 and (chunk := os.read(fd, min(1 << 20, left))):
                chunks.append(chunk)
                left -= len(chunk)
            if left <= 0:
                raise too_large
            return b"".join(chunks)
        finally:
            os.close(fd)

    # writing ------------------------------------------------------------------
    def writer(self, path: str) -> _Writer:
        r = self.resolve(path, create_parents=True)
        try:
            self._check_writable(r, "write", path)
            if r.name is None or (r.st is not None and stat.S_ISDIR(r.st.st_mode)):
                raise FsError(f"write {path}: is a directory")
            return _Writer(r, path, self.ids.owner)
        except BaseException:
            r.close()
            raise

    def write_bytes(self, path: str, data: bytes) -> None:
        w = self.writer(path)
        try:
            w.write(data)
            w.commit()
        finally:
            w.abort()

    def mkdir(self, path: str) -> dict[str, Any]:
        with self.resolve(path, create_parents=True) as r:
            self._check_writable(r, "mkdir", path)
            if r.st is not None or r.name is None:
                raise FsError(f"mkdir {path}: directory already exists", 409, "conflict")
            try:
                os.mkdir(r.name, 0o755, dir_fd=r.dir_fd)
                self._own(r.name, r.dir_fd)
                st = os.stat(r.name, dir_fd=r.dir_fd, follow_symlinks=False)
            except FileExistsError:
                raise FsError(f"mkdir {path}: directory already exists", 409, "conflict") from None
            except OSError as exc:
                raise _oserror("mkdir", path, exc) from None
            return self._entry(r.name, r.path, st, None)

    def remove(self, path: str) -> None:
        with self.resolve(path, follow_final=False) as r:
            if r.st is None:
                raise FsError(f"remove {path}: no such file or directory")
            if r.name is None:
                raise FsError(f"remove {path}: refusing to remove the capsule root")
            self._check_writable(r, "remove", path)
            try:
                # By fd and iteratively, whatever the tree's depth.
                _fdtree.remove_at(r.dir_fd, r.name)
            except OSError as exc:
                raise _oserror("remove", path, exc) from None

    # listing ------------------------------------------------------------------
    def list_dir(self, path: str, depth: int) -> list[dict[str, Any]]:
        depth = min(max(depth, 1), MAX_LIST_DEPTH)  # envd treats 0 like 1
        with self.resolve(path) as r:
            if r.st is None:
                raise FsError(f"list {path}: no such file or directory")
            if not stat.S_ISDIR(r.st.st_mode):
                raise FsError(f"list {path}: not a directory")
            try:
                fd = (
                    os.open(
                        r.name,
                        os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                        dir_fd=r.dir_fd,
                    )
                    if r.name is not None
                    else os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=r.dir_fd)
                )
            except OSError as exc:
                raise _oserror("list", path, exc) from None
            base = r.path
        out: list[dict[str, Any]] = []
        try:
            self._list_into(out, fd, base.rstrip("/"), 1, depth)
        finally:
            os.close(fd)
        return out

    def _list_into(
        self, out: list[dict[str, Any]], fd: int, base: str, level: int, depth: int
    ) -> None:
        try:
            names = sorted(os.listdir(fd))
        except OSError:
            return
        for name in names:
            child = f"{base}/{name}"
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue
            target = None
            shown = st
            if stat.S_ISLNK(st.st_mode):
                # Report what the link points at, resolved inside the capsule.
                try:
                    with self.resolve(child) as tr:
                        if tr.st is not None:
                            shown, target = tr.st, tr.path
                except FsError:
                    pass
                if target is None:
                    with contextlib.suppress(OSError):
                        target = os.readlink(name, dir_fd=fd)
            out.append(self._entry(name, child, shown, target))
            if stat.S_ISDIR(st.st_mode) and level < depth:
                try:
                    sub = os.open(
                        name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
                    )
                except OSError:
                    continue
                try:
                    self._list_into(out, sub, child, level + 1, depth)
                finally:
                    os.close(sub)

    def _entry(
        self, name: str, path: str, st: os.stat_result, target: str | None
    ) -> dict[str, Any]:
        return entry_json(
            name,
            path,
            st_mode=st.st_mode,
            size=st.st_size,
            # As the capsule sees them: its root is a host uid of its own.
            owner=_owner(self.ids.inside(st.st_uid)),
            group=_group(self.ids.inside(st.st_gid)),
            modified_at=int(st.st_mtime),
            target=target,
        )


class _FdReader:
    """Reads an open fd (the file was checked when it was opened)."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def read(self, size: int) -> bytes:
        assert self._fd is not None, "read after close"
        return os.read(self._fd, size)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _Writer:
    """Writes to a temp file beside the target and renames it over the target on commit."""

    def __init__(self, r: _Resolved, path: str, owner: tuple[int, int] | None) -> None:
        self._r = r
        self._path = path
        assert r.name is not None
        self._tmp = f".wrenn-upload-{secrets.token_hex(6)}"
        try:
            self._fd: int | None = os.open(
                self._tmp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o644,
                dir_fd=r.dir_fd,
            )
        except OSError as exc:
            raise _oserror("write", path, exc) from None
        if owner is not None:
            os.fchown(self._fd, *owner)
        self.size = 0

    def write(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
                self.size += n
        except OSError as exc:
            raise _oserror("write", self._path, exc) from None

    def commit(self) -> None:
        r = self._r
        assert self._fd is not None and r.name is not None
        try:
            if r.st is not None and stat.S_ISREG(r.st.st_mode):
                os.fchmod(self._fd, stat.S_IMODE(r.st.st_mode))
            os.close(self._fd)
            self._fd = None
            os.rename(self._tmp, r.name, src_dir_fd=r.dir_fd, dst_dir_fd=r.dir_fd)
            self._tmp = ""
        except OSError as exc:
            raise _oserror("write", self._path, exc) from None

    def abort(self) -> None:
        """Idempotent cleanup; after a successful commit it only closes fds."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._tmp:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp, dir_fd=self._r.dir_fd)
            self._tmp = ""
        self._r.close()
