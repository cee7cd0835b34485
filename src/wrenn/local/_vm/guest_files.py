"""File ops for the guest agent (``guest_agent.py``), in the guest.

Copied into the image next to the agent and imported by it; standard library
only, never imported by the host except in tests.  Paths are the guest's own.
The host side is ``_guest_files.py``; its caps are the same numbers.
"""

from __future__ import annotations

import base64
import errno
import grp
import os
import pwd
import shutil
import stat
from collections import deque
from typing import Any

MAX_CHUNK_BYTES = 1024 * 1024  # of a file per read_file answer
MAX_LIST_PAGE = 1000  # entries per list_dir answer
MAX_SYMLINKS = 40  # links followed by one resolve, as the server's CapsuleFS


def _read_file(request: dict[str, Any]) -> dict[str, Any]:
    length = min(int(request["length"]), MAX_CHUNK_BYTES)
    offset = int(request.get("offset") or 0)
    # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below).
    fd = os.open(request["path"], os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{request['path']!r} is not a regular file")
        size = info.st_size
        parts: list[bytes] = []
        got = 0
        while got < length:
            part = os.pread(fd, length - got, offset + got)
            if not part:
                break
            parts.append(part)
            got += len(part)
    finally:
        os.close(fd)
    data = b"".join(parts)
    return {"data": base64.b64encode(data).decode(), "size": size, "eof": got < length}


def _write_file(request: dict[str, Any]) -> dict[str, Any]:
    data = base64.b64decode(request["data"], validate=True)
    # O_NONBLOCK: a FIFO without a reader fails (ENXIO) instead of hanging.
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK
    if request.get("truncate"):
        flags |= os.O_TRUNC
    fd = os.open(request["path"], flags, int(request.get("mode") or 0o644))
    try:
        view, offset = memoryview(data), int(request.get("offset") or 0)
        while view:
            written = os.pwrite(fd, view, offset)
            view, offset = view[written:], offset + written
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    return {"size": size}


def _describe(path: str, name: str) -> dict[str, Any]:
    info = os.lstat(path)
    kind = (
        "dir"
        if stat.S_ISDIR(info.st_mode)
        else "file"
        if stat.S_ISREG(info.st_mode)
        else "symlink"
        if stat.S_ISLNK(info.st_mode)
        else "other"
    )
    entry = {
        "name": name,
        "type": kind,
        "size": info.st_size,
        "mode": stat.S_IMODE(info.st_mode),
        "st_mode": info.st_mode,  # with the file type bits (a FIFO, a device)
        "mtime_ns": info.st_mtime_ns,
        # Names as this guest knows them (its own /etc/passwd and /etc/group).
        "owner": _name_of(pwd.getpwuid, info.st_uid),
        "group": _name_of(grp.getgrgid, info.st_gid),
    }
    if kind == "symlink":
        entry["target"] = os.readlink(path)
    return entry


def _name_of(lookup: Any, number: int) -> str:
    try:
        return str(lookup(number)[0])
    except KeyError:
        return str(number)


def _stat(request: dict[str, Any]) -> dict[str, Any]:
    return _describe(request["path"], os.path.basename(request["path"]))


def _list_dir(request: dict[str, Any]) -> dict[str, Any]:
    path = request["path"]
    names = sorted(os.listdir(path))
    offset = int(request.get("offset") or 0)
    limit = min(int(request.get("limit") or MAX_LIST_PAGE), MAX_LIST_PAGE)
    entries = []
    for name in names[offset : offset + limit]:
        try:
            entries.append(_describe(os.path.join(path, name), name))
        except FileNotFoundError:
            continue  # removed since the listing
    return {"entries": entries, "total": len(names)}


def _remove(request: dict[str, Any]) -> dict[str, Any]:
    path = request["path"]
    if os.path.isdir(path) and not os.path.islink(path):
        if request.get("recursive"):
            shutil.rmtree(path)
        else:
            os.rmdir(path)
    else:
        os.unlink(path)
    return {}


def _mkdir(request: dict[str, Any]) -> dict[str, Any]:
    mode = int(request.get("mode") or 0o777)
    if request.get("parents"):
        os.makedirs(request["path"], mode, exist_ok=True)
    else:
        os.mkdir(request["path"], mode)
    return {}


def _resolve(request: dict[str, Any]) -> dict[str, Any]:
    """Resolve an absolute path one component at a time, as the server's
    ``CapsuleFS.resolve`` does on a host root: ``..`` pops, links are followed
    (the final one only with ``follow``) at most MAX_SYMLINKS times; only the
    final component may be missing (``entry`` null), a missing parent is made
    with ``create_parents``.  The answer's ``path`` is the resolved path.  There is
    no host root to escape from here, so plain paths are enough.
    """
    path = request["path"]
    follow = request.get("follow", True) is not False
    create_parents = request.get("create_parents") is True
    todo = deque(c for c in path.split("/") if c not in ("", "."))
    stack: list[str] = []
    budget = MAX_SYMLINKS
    while todo:
        comp = todo.popleft()
        if comp == "..":
            if stack:
                stack.pop()
            continue
        last = not todo
        here = "/" + "/".join([*stack, comp])
        try:
            info = os.lstat(here)
        except FileNotFoundError:
            if last:
                return {"path": here, "entry": None}
            if not create_parents:
                raise
            try:
                os.mkdir(here, 0o755)
            except FileExistsError:
                pass
            todo.appendleft(comp)
            continue
        if stat.S_ISLNK(info.st_mode) and (follow or not last):
            budget -= 1
            if budget < 0:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            target = os.readlink(here)
            if target.startswith("/"):
                stack.clear()
            todo.extendleft(reversed([c for c in target.split("/") if c not in ("", ".")]))
            continue
        if last:
            return {"path": here, "entry": _describe(here, comp)}
        if not stat.S_ISDIR(info.st_mode):
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
        stack.append(comp)
    here = "/" + "/".join(stack)  # the path named a directory ("/", "/root/..")
    return {"path": here, "entry": _describe(here, stack[-1] if stack else "/")}


def _rename(request: dict[str, Any]) -> dict[str, Any]:
    """Move ``path`` over ``target`` (an upload's temp file into place), after
    giving it ``mode`` when one is sent."""
    if request.get("mode") is not None:
        os.chmod(request["path"], int(request["mode"]))
    os.rename(request["path"], request["target"])
    return {}


OPS = {
    "read_file": _read_file,
    "write_file": _write_file,
    "stat": _stat,
    "list_dir": _list_dir,
    "remove": _remove,
    "mkdir": _mkdir,
    "resolve": _resolve,
    "rename": _rename,
}
