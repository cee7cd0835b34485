"""Walk, copy, measure and remove directory trees by file descriptor.

Capsule code owns the trees these functions walk (a capsule's writable dirs),
and for a snapshot it may still be running.  So nothing here names a file by a
host path string below the tree's root, and nothing recurses:

- every step is ``openat``/``fstatat``/``unlinkat`` relative to the fd of the
  directory being walked, with ``O_NOFOLLOW``: a directory swapped for a symlink
  (to ``/etc``, say) mid-walk fails to open as a directory and is never entered;
- at most one fd per tree is open at a time.  The walk descends by opening a
  child and climbs back by opening ``..``, checking that it is the very directory
  (device and inode) it came from; a directory moved away mid-walk aborts the
  walk instead of leading it elsewhere.  Depth costs memory, never fds or stack
  (a 1,200-level tree made by capsule code once broke recursive copies).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO that appears where a file was must not hang the copy.
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20
# (uid, gid) that copied entries are given, or None to leave them the copier's.
Owner: TypeAlias = tuple[int, int] | None
# Removal re-lists a directory that is not empty after one pass (something was
# created meanwhile) at most this often before giving up on it.
_RM_PASSES = 3


class TreeChanged(OSError):
    """A directory moved while it was being walked."""

    def __init__(self, what: str) -> None:
        super().__init__(errno.ESTALE, f"directory changed during walk: {what}")


@dataclass
class _Frame:
    """One directory on the walk: its identity, and the entries still to visit."""

    ident: tuple[int, int]
    names: list[str]
    st: os.stat_result
    name: str = ""  # this directory's name in its parent ("" for the root)
    dst_ident: tuple[int, int] | None = None  # the matching copy's identity
    passes: int = 0  # how often removal re-listed this directory


def _ident(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _open_root(path: Path | str) -> int:
    """The fd of a tree's root; the root itself must not be a symlink."""
    return os.open(path, _DIR)


def _listing(fd: int, writable: bool = False) -> list[str]:
    if writable:
        # A capsule may leave directories read-only; their entries must still go.
        st = os.fstat(fd)
        if st.st_mode & 0o700 != 0o700:
            with contextlib.suppress(OSError):
                os.fchmod(fd, stat.S_IMODE(st.st_mode) | 0o700)
    names = os.listdir(fd)
    names.sort(reverse=True)  # popped from the end: visited in name order
    return names


def _climb(fd: int, expect: tuple[int, int]) -> int:
    """The fd of ``fd``'s parent, checked to be the directory we descended from."""
    parent = os.open("..", _DIR, dir_fd=fd)
    if _ident(os.fstat(parent)) != expect:
        os.close(parent)
        raise TreeChanged("parent moved")
    return parent


# removal ----------------------------------------------------------------------
def remove_at(parent_fd: int, name: str) -> None:
    """Remove ``name`` (a file, link or whole directory tree) under ``parent_fd``."""
    st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=parent_fd)
        return
    fd = os.open(name, _DIR, dir_fd=parent_fd)
    if _ident(os.fstat(fd)) != _ident(st):
        os.close(fd)
        raise TreeChanged(name)
    _empty_dir(fd)
    os.rmdir(name, dir_fd=parent_fd)


def _empty_dir(fd: int) -> None:
    """Delete everything below the directory ``fd``, which this closes."""
    try:
        _empty_walk(fd_box := [fd])
    finally:
        os.close(fd_box[0])


def _empty_walk(fd_box: list[int]) -> None:
    # fd_box[0] is the directory currently open, so the caller can close it
    # whatever depth an error happens at.
    fd = fd_box[0]
    st0 = os.fstat(fd)
    stack = [_Frame(_ident(st0), _listing(fd, True), st0)]
    while stack:
        top = stack[-1]
        if top.names:
            name = top.names.pop()
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=fd)
                continue
            try:
                child = os.open(name, _DIR, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    # Swapped for a link or file since the stat: unlink that instead.
                    with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                        os.unlink(name, dir_fd=fd)
                    continue
                if exc.errno == errno.ENOENT:
                    continue
                raise
            child_st = os.fstat(child)
            os.close(fd)
            fd = fd_box[0] = child
            stack.append(_Frame(_ident(child_st), _listing(fd, True), child_st, name))
            continue
        if top.passes < _RM_PASSES:
            # Entries created since the listing would make the rmdir below fail.
            again = _listing(fd)
            if again:
                top.names = again
                top.passes += 1
                continue
        if len(stack) == 1:
            return
        stack.pop()
        parent = _climb(fd, stack[-1].ident)
        os.close(fd)
        fd = fd_box[0] = parent
        os.rmdir(top.name, dir_fd=fd)


def remove_tree(path: Path | str) -> None:
    """Remove the tree at ``path`` (the path's own components are server-owned)."""
    path = Path(path)
    try:
        parent = os.open(path.parent, _DIR)
    except FileNotFoundError:
        return
    try:
        remove_at(parent, path.name)
    except FileNotFoundError:
        pass
    finally:
        os.close(parent)


# copying ----------------------------------------------------------------------
def _copy_data(src: int, dst: int, size: int) -> None:
    """Copy the data extents of ``src`` to ``dst``; holes stay holes."""
    offset = 0
    while offset < size:
        try:
            data = os.lseek(src, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole is left
                break
            raise
        if data >= size:
            break
        end = min(os.lseek(src, data, os.SEEK_HOLE), size)
        pos = data
        while pos < end:
            chunk = os.pread(src, min(_CHUNK, end - pos), pos)
            if not chunk:
                break  # the file shrank under us
            view = memoryview(chunk)
            while view:
                n = os.pwrite(dst, view, pos)
                view = view[n:]
                pos += n
        if pos <= offset:
            break
        offset = pos
    os.ftruncate(dst, size)


def _copy_file(src_dir: int, dst_dir: int, name: str, owner: Owner) -> None:
    try:
        src = os.open(name, _FILE, dir_fd=src_dir)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOENT, errno.ENXIO):
            return  # swapped for a link, or gone: not a file to copy
        raise
    try:
        st = os.fstat(src)
        if not stat.S_ISREG(st.st_mode):
            return
        dst = os.open(name, _NEW_FILE, stat.S_IMODE(st.st_mode), dir_fd=dst_dir)
        try:
            _copy_data(src, dst, st.st_size)
            if owner is not None:
                os.fchown(dst, *owner)  # before the mode: a chown may clear setuid bits
            os.fchmod(dst, stat.S_IMODE(st.st_mode))
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _copy_meta(dst_fd: int, st: os.stat_result, owner: Owner) -> None:
    if owner is not None:
        os.fchown(dst_fd, *owner)
    os.fchmod(dst_fd, stat.S_IMODE(st.st_mode))
    os.utime(dst_fd, ns=(st.st_atime_ns, st.st_mtime_ns))


def copy_tree(src: Path | str, dst: Path | str, owner: Owner = None) -> None:
    """Copy the tree at ``src`` into ``dst`` (created, may exist): regular files
    with their holes, directories and symlinks (as links, never followed); FIFOs,
    sockets and devices are skipped.  Modes and times are kept; with ``owner``
    (uid, gid), everything copied, ``dst`` included, belongs to it (a capsule's
    files are its root's host uid, a template's are root's)."""
    Path(dst).mkdir(parents=True, exist_ok=True)
    sfd = _open_root(src)
    try:
        dfd = _open_root(dst)
    except BaseException:
        os.close(sfd)
        raise
    try:
        sst = os.fstat(sfd)
        dst_st = os.fstat(dfd)
        stack = [_Frame(_ident(sst), _listing(sfd), sst, "", _ident(dst_st))]
        while stack:
            top = stack[-1]
            if top.names:
                name = top.names.pop()
                try:
                    st = os.stat(name, dir_fd=sfd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    _copy_file(sfd, dfd, name, owner)
                elif stat.S_ISLNK(st.st_mode):
                    with contextlib.suppress(FileNotFoundError, OSError):
                        target = os.readlink(name, dir_fd=sfd)
                        os.symlink(target, name, dir_fd=dfd)
                        if owner is not None:
                            os.chown(name, *owner, dir_fd=dfd, follow_symlinks=False)
                        os.utime(
                            name,
                            ns=(st.st_atime_ns, st.st_mtime_ns),
                            dir_fd=dfd,
                            follow_symlinks=False,
                        )
                elif stat.S_ISDIR(st.st_mode):
                    try:
                        child = os.open(name, _DIR, dir_fd=sfd)
                    except OSError as exc:
                        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                            continue  # swapped for a link or removed: never followed
                        raise
                    try:
                        os.mkdir(name, 0o700, dir_fd=dfd)
                        dchild = os.open(name, _DIR, dir_fd=dfd)
                    except BaseException:
                        os.close(child)
                        raise
                    child_st = os.fstat(child)
                    os.close(sfd)
                    os.close(dfd)
                    sfd, dfd = child, dchild
                    stack.append(
                        _Frame(
                            _ident(child_st),
                            _listing(sfd),
                            child_st,
                            name,
                            _ident(os.fstat(dfd)),
                        )
                    )
                continue
            # Directory done: its metadata last (copying into it changed its mtime).
            _copy_meta(dfd, top.st, owner)
            if len(stack) == 1:
                break
            stack.pop()
            parent = stack[-1]
            assert parent.dst_ident is not None
            new_s = _climb(sfd, parent.ident)
            try:
                new_d = _climb(dfd, parent.dst_ident)
            except BaseException:
                os.close(new_s)
                raise
            os.close(sfd)
            os.close(dfd)
            sfd, dfd = new_s, new_d
    finally:
        os.close(sfd)
        os.close(dfd)


# measuring --------------------------------------------------------------------
def walk_stats(
    root: Path | str, visit: Callable[[os.stat_result], None], limit: int = 200_000
) -> int:
    """``visit`` the lstat of every entry below ``root`` (at most ``limit``); returns the count."""
    fd = _open_root(root)
    seen = 0
    try:
        st0 = os.fstat(fd)
        stack = [_Frame(_ident(st0), _listing(fd), st0)]
        while stack and seen < limit:
            top = stack[-1]
            if top.names:
                name = top.names.pop()
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except OSError:
                    continue
                seen += 1
                visit(st)
                if stat.S_ISDIR(st.st_mode):
                    try:
                        child = os.open(name, _DIR, dir_fd=fd)
                    except OSError:
                        continue
                    child_st = os.fstat(child)
                    try:
                        names = _listing(child)
                    except OSError:
                        os.close(child)
                        continue
                    os.close(fd)
                    fd = child
                    stack.append(_Frame(_ident(child_st), names, child_st, name))
                continue
            if len(stack) == 1:
                break
            stack.pop()
            parent = _climb(fd, stack[-1].ident)
            os.close(fd)
            fd = parent
    finally:
        os.close(fd)
    return seen


def disk_usage(root: Path | str, limit: int = 200_000) -> int:
    """Allocated bytes of the entries below ``root`` (symlinks not followed)."""
    total = 0

    def add(st: os.stat_result) -> None:
        nonlocal total
        total += st.st_blocks * 512

    try:
        walk_stats(root, add, limit)
    except OSError:
        pass  # a tree that moved mid-walk: what was counted so far
    return total
