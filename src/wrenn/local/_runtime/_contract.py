"""The values a backend and its callers exchange across the ``Sandbox`` interface."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Launch:
    """How to start one command for a capsule on the host."""

    argv: list[str]
    env: dict[str, str]
    cwd: str | None
    new_session: bool
    # True when argv[0] is a wrapper (nsenter) and the real process is its child.
    nested: bool
    # True when the process writes its own capsule-visible pid, then a newline, to
    # its stdin (a socket the caller provides) before exec'ing the command.
    reports_pid: bool = False
    # Descriptors the launched command must inherit (namespace and root fds).
    pass_fds: tuple[int, ...] = ()


class BootError(RuntimeError):
    pass


class Unsupported(RuntimeError):
    """The backend lacks the capability a call needs (see ``Capabilities``)."""


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; callers branch on these, never on its name."""

    # Capsule code is fenced off from the host (its files, processes, network).
    isolated: bool
    # Capsule files are host files: ``open_root()`` and ``host_paths()`` work.
    host_filesystem: bool
    # Pause keeps the capsule's memory in a snapshot (it survives a server restart).
    memory_snapshots: bool
    # The capsule's vcpus and memory_mb are enforced (it has cgroups of its own).
    limits: bool
    # A command that cannot start (missing cwd or program) would show up as the
    # exit status of the backend's wrappers, so callers check both first.
    precheck_exec: bool


@dataclass(frozen=True)
class HostPaths:
    """Host-side directories of a capsule (backends with ``host_filesystem`` only)."""

    rw_dir: Path  # the writable layer: root, tmp, home, workspace
    run_dir: Path  # server-owned, shown at ``run_dir_for_processes()`` inside
    owner: tuple[int, int] | None  # host (uid, gid) of the capsule's root, when mapped


@dataclass(frozen=True)
class Usage:
    """One metrics sample of a capsule."""

    cpu_seconds: float
    rss_bytes: int
    disk_bytes: int


@dataclass(frozen=True)
class Probe:
    """Whether a backend works on this host, and what its sandboxes then need."""

    problem: str | None  # None: usable
    reason: str = ""  # why it was chosen, with any caveat
    # Extra keyword arguments for the backend's sandboxes (found by the probe).
    options: Mapping[str, Any] = field(default_factory=dict)
    # The capsule's root can be a host uid of its own (see ``_ids``).
    maps_root: bool = False
    # ``isolation="auto"`` may pick it; False for a backend that works here but
    # only on request (a microVM on the software CPU: isolated, but slow).
    automatic: bool = True
