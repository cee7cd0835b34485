"""What the files routes and the manager need of a capsule's files.

Two implementations: ``_fs.CapsuleFS`` for backends whose capsule files are host
files (``capabilities.host_filesystem``), working on directory fds, and what a
backend without them returns from ``Sandbox.guest_files()`` (the microVM's
``_vm._capsule_files.VmCapsuleFiles``, through its guest agent).  Users see one
HTTP API, so both answer the same request alike: the same paths (relative ones
under the home directory), entries and ``FsError``s.  The pieces both build
those from (``capsule_path``, ``entry_json``, ``FsError``, ``PSEUDO_TOP``) live
here, so the two cannot drift apart.

Every call blocks (the app runs them in worker threads), except
``FileReader.close``, which must be cheap.
"""

from __future__ import annotations

import stat
from typing import Any, Protocol

# Top-level capsule directories of kernel interfaces: never read or written
# through the API (on a host they would be the host kernel's).
PSEUDO_TOP = frozenset({"proc", "sys", "dev"})


class FsError(Exception):
    def __init__(self, message: str, status: int = 502, code: str = "agent_error") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


def capsule_path(path: str, home: str) -> str:
    """``path`` as an absolute capsule path (a relative one is under ``home``)."""
    if not path:
        raise FsError("path is required", 400, "invalid_request")
    if "\0" in path:
        raise FsError("path contains a NUL byte", 400, "invalid_request")
    return path if path.startswith("/") else f"{home}/{path}"


def entry_json(
    name: str,
    path: str,
    *,
    st_mode: int,
    size: int,
    owner: str,
    group: str,
    modified_at: int,
    target: str | None,
) -> dict[str, Any]:
    """One files/list (or mkdir) entry, whatever the backend's files are."""
    perms = stat.filemode(st_mode)
    if stat.S_ISLNK(st_mode):
        perms = "L" + perms[1:]
    entry: dict[str, Any] = {
        "name": name,
        "path": path,
        "type": _kind(st_mode),
        "size": size,
        "mode": st_mode & 0o7777,
        "permissions": perms,
        "owner": owner,
        "group": group,
        "modified_at": modified_at,
    }
    if target is not None:
        entry["symlink_target"] = target
    return entry


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "unknown"


class FileReader(Protocol):
    """A regular file opened for a streamed read."""

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes; b"" at the end."""
        ...

    def close(self) -> None: ...


class FileWriter(Protocol):
    """A streamed upload: the file at its path is replaced only by ``commit``."""

    def write(self, data: bytes) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None:
        """Drop what was written; idempotent, and a no-op after ``commit``."""
        ...


class CapsuleFiles(Protocol):
    def read_bytes(self, path: str, limit: int = ...) -> bytes:
        """The whole file; 413 ``too_large`` over ``limit`` (``_fs.MAX_READ_BYTES``)."""
        ...

    def open_read(self, path: str) -> FileReader: ...

    def writer(self, path: str) -> FileWriter: ...

    def write_bytes(self, path: str, data: bytes) -> None: ...

    def mkdir(self, path: str) -> dict[str, Any]: ...

    def remove(self, path: str) -> None: ...

    def list_dir(self, path: str, depth: int) -> list[dict[str, Any]]: ...
