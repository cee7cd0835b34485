"""The isolation backends by name, and the choice of one at start-up (with why).

A backend is a ``Sandbox`` subclass: its ``kind`` is the name
``LocalServer(isolation=...)`` takes, its ``CAPABILITIES`` say what it can do
and its ``probe()`` whether it works on this host.  ``"auto"`` takes the first
registered isolated backend whose probe passes, else the first one without
isolation, and says so.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ._base import Sandbox
from ._bwrap import BwrapSandbox
from ._cgroup import CgroupTree, Limits
from ._contract import Capabilities, Probe
from ._ids import SERVER_IDS, Ids
from ._microvm import VmSandbox
from ._plain import PlainSandbox

log = logging.getLogger("wrenn.local")

FREEZER_CHOICES = ("auto", "cgroup", "sigstop")

# In order of preference for "auto".
BACKENDS: dict[str, type[Sandbox]] = {}


def register(cls: type[Sandbox]) -> type[Sandbox]:
    if cls.kind in BACKENDS or cls.kind == "auto":
        raise ValueError(f"an isolation backend named {cls.kind!r} is already registered")
    BACKENDS[cls.kind] = cls
    return cls


def lookup(name: str) -> type[Sandbox]:
    """The backend named ``name``; an unknown name lists the registered ones."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(
            f"unknown isolation backend {name!r}: choose one of {isolation_choices()}"
        ) from None


def isolation_choices() -> tuple[str, ...]:
    return ("auto", *BACKENDS)


register(VmSandbox)
register(BwrapSandbox)
register(PlainSandbox)


@dataclass
class Backend:
    """The backend this server runs its capsules with."""

    kind: str  # a registered name
    reason: str  # why this backend (and why not a better one)
    # The server-owned cgroups (limits, freeze, kill), None when not allowed.
    cgroups: CgroupTree | None
    freeze_by_cgroup: bool = False
    # Keyword arguments its sandboxes need, from its probe.
    options: Mapping[str, Any] = field(default_factory=dict)
    # Capsule root can be a host uid of its own (root server, bwrap as that uid works).
    maps_root: bool = False

    @property
    def sandbox_class(self) -> type[Sandbox]:
        return lookup(self.kind)

    @property
    def capabilities(self) -> Capabilities:
        declared = self.sandbox_class.CAPABILITIES
        return replace(declared, limits=declared.limits or bool(self.enforced_limits))

    def sandbox(
        self,
        capsule_id: str,
        capsule_dir: Path,
        ro_binds: tuple[str, ...] = (),
        limits: Limits | None = None,
        ids: Ids = SERVER_IDS,
    ) -> Sandbox:
        cg = self.cgroups.capsule(capsule_id) if self.cgroups is not None else None
        return self.sandbox_class(
            capsule_id,
            capsule_dir,
            cg,
            ro_binds,
            limits,
            freeze_by_cgroup=self.freeze_by_cgroup,
            ids=ids,
            **self.options,
        )

    # The writable layer of a capsule that may have no sandbox (blocking calls).
    def save_layer(self, capsule_dir: Path, dest: Path, owner: tuple[int, int]) -> None:
        self.sandbox_class.save_layer(capsule_dir, dest, owner)

    def load_layer(self, src: Path, capsule_dir: Path, owner: tuple[int, int] | None) -> None:
        self.sandbox_class.load_layer(src, capsule_dir, owner)

    def layer_bytes(self, capsule_dir: Path) -> int:
        return self.sandbox_class.layer_bytes(capsule_dir)

    @property
    def freeze_mode(self) -> str:
        if self.capabilities.memory_snapshots:
            return "memory_snapshot"
        return "cgroup" if self.freeze_by_cgroup else "sigstop"

    @property
    def enforced_limits(self) -> tuple[str, ...]:
        return self.cgroups.enforced if self.cgroups is not None else ()

    def cleanup(self) -> None:
        if self.cgroups is not None:
            self.cgroups.cleanup()


def _cgroups(freezer: str, tag: str) -> tuple[CgroupTree | None, bool]:
    tree = CgroupTree.create(tag) if sys.platform.startswith("linux") else None
    can_freeze = tree is not None and tree.can_freeze
    if freezer == "cgroup" and not can_freeze:
        if tree is not None:
            tree.cleanup()
        raise RuntimeError("freezer='cgroup' requested but no writable cgroup v2 hierarchy")
    return tree, can_freeze and freezer != "sigstop"


def _backend(cls: type[Sandbox], reason: str, probe: Probe, freezer: str, tag: str) -> Backend:
    cgroups, freeze_by_cgroup = _cgroups(freezer, tag)
    return Backend(
        cls.kind, reason, cgroups, freeze_by_cgroup, dict(probe.options), probe.maps_root
    )


def choose_backend(isolation: str, tag: str, freezer: str = "auto") -> Backend:
    if isolation != "auto":
        lookup(isolation)  # an unknown name fails before any probe
    if freezer not in FREEZER_CHOICES:
        raise ValueError(f"freezer must be one of {FREEZER_CHOICES}, not {freezer!r}")
    if isolation != "auto":
        cls = lookup(isolation)
        if not cls.CAPABILITIES.isolated:
            # Nothing to probe: it is what was asked for.
            return _backend(cls, f"isolation={isolation!r} requested", Probe(None), freezer, tag)
        probe = cls.probe()
        if probe.problem is not None:
            raise RuntimeError(
                f"isolation={isolation!r} requested but the {cls.kind} backend is unusable: {probe.problem}"
            )
        if not probe.automatic:
            log.warning("wrenn.local: isolation=%r: %s", isolation, probe.reason)
        return _backend(cls, probe.reason, probe, freezer, tag)
    problems: dict[str, str] = {}
    for cls in BACKENDS.values():
        if cls.CAPABILITIES.isolated:
            probe = cls.probe()
            if probe.problem is None and probe.automatic:
                passed_over = "".join(f"; not {kind}: {why}" for kind, why in problems.items())
                return _backend(cls, probe.reason + passed_over, probe, freezer, tag)
            problems[cls.kind] = probe.problem or f"only on request ({probe.reason})"
    if len(problems) == 1:
        (problem,) = problems.values()
    else:
        problem = "; ".join(f"{kind}: {why}" for kind, why in problems.items()) or "none registered"
    fallback = next(cls for cls in BACKENDS.values() if not cls.CAPABILITIES.isolated)
    return _backend(
        fallback,
        f"falling back to plain subprocesses WITHOUT isolation: {problem}",
        Probe(None),
        freezer,
        tag,
    )
