"""Which host uid a capsule's root is.

A server that runs as root would otherwise map capsule uid 0 to host uid 0: a
process that escaped the capsule's mount namespace would then act as host root
(without capabilities, but owning every root-owned file). Instead each capsule's
root is a host uid of its own, ``BASE + hash(capsule id) % SPAN``, one that no
account on the host has. bubblewrap is started as that uid (an unprivileged
user namespace maps it to 0 inside), so every file the capsule creates belongs
to it on the host, and capsules cannot touch each other's files even outside
their namespaces.

What it needs: the directories bubblewrap binds from must be reachable by that
uid, because it resolves them as that uid. The server makes its own
directories so (``0711``: search without listing) and checks every ancestor;
where one is not (a state dir under ``/root``, a code-runner interpreter under
``/root/.pyenv``), that capsule's root stays host uid 0, and the server logs why.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

BASE = 1_000_000_000
SPAN = 500_000_000
OVERFLOW_ID = 65534  # what a capsule sees for a host id it has no mapping for


@dataclass(frozen=True)
class Ids:
    """The host uid/gid of a capsule's root (``mapped``), or the server's own."""

    uid: int
    gid: int
    mapped: bool

    @property
    def owner(self) -> tuple[int, int] | None:
        """What files made for the capsule by the server must be chowned to."""
        return (self.uid, self.gid) if self.mapped else None

    def inside(self, host_id: int) -> int:
        """The id the capsule sees for a host uid (or gid)."""
        if not self.mapped:
            return host_id
        return 0 if host_id == self.uid else OVERFLOW_ID


SERVER_IDS = Ids(os.geteuid(), os.getegid(), False)


def capsule_uid(capsule_id: str) -> int:
    """A stable host uid for ``capsule_id`` that no account on this host has."""
    for attempt in range(64):
        digest = hashlib.sha256(f"{attempt}:{capsule_id}".encode()).digest()
        uid = BASE + int.from_bytes(digest[:8], "big") % SPAN
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
    raise RuntimeError(f"no free host uid for {capsule_id}")  # 64 accounts in a row: never


def unreachable(paths: list[Path]) -> Path | None:
    """The first directory that other uids cannot search on the way to one of ``paths``
    (each path's ancestors and the path itself), or None when all can be reached."""
    seen: set[Path] = set()
    for path in paths:
        for directory in [*reversed(path.parents), path]:
            if directory in seen:
                continue
            seen.add(directory)
            try:
                st = os.stat(directory)
            except OSError:
                return directory
            if stat.S_ISDIR(st.st_mode) and not st.st_mode & stat.S_IXOTH:
                return directory
    return None


def allow_search(directory: Path) -> None:
    """Let other uids pass through ``directory`` (``o+x``), never list or read it."""
    st = os.stat(directory)
    if not st.st_mode & stat.S_IXOTH:
        os.chmod(directory, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
