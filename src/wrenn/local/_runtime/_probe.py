"""Pick the isolation backend once at start-up, and say why."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ._base import HOST_ENV, Sandbox, ensure_rw_skeleton
from ._bwrap import BwrapSandbox, as_capsule_root, bwrap_argv
from ._cgroup import CgroupTree, Limits
from ._ids import SERVER_IDS, Ids, capsule_uid
from ._plain import PlainSandbox

ISOLATION_CHOICES = ("auto", "bwrap", "none")
FREEZER_CHOICES = ("auto", "cgroup", "sigstop")


@dataclass
class Backend:
    kind: str  # "bwrap" or "none"
    reason: str  # why this backend (and why not a better one)
    # The server-owned cgroups (limits, freeze, kill), None when not allowed.
    cgroups: CgroupTree | None
    freeze_by_cgroup: bool = False
    # bwrap --disable-userns works here (no nested user namespaces in capsules).
    disable_userns: bool = True
    # Capsule root can be a host uid of its own (root server, bwrap as that uid works).
    maps_root: bool = False

    def sandbox(
        self,
        capsule_id: str,
        capsule_dir: Path,
        ro_binds: tuple[str, ...] = (),
        limits: Limits | None = None,
        ids: Ids = SERVER_IDS,
    ) -> Sandbox:
        cg = self.cgroups.capsule(capsule_id) if self.cgroups is not None else None
        if self.kind == "bwrap":
            return BwrapSandbox(
                capsule_id,
                capsule_dir,
                cg,
                ro_binds,
                limits,
                freeze_by_cgroup=self.freeze_by_cgroup,
                disable_userns=self.disable_userns,
                ids=ids,
            )
        return PlainSandbox(
            capsule_id, capsule_dir, cg, ro_binds, limits, freeze_by_cgroup=self.freeze_by_cgroup
        )

    @property
    def freeze_mode(self) -> str:
        return "cgroup" if self.freeze_by_cgroup else "sigstop"

    @property
    def enforced_limits(self) -> tuple[str, ...]:
        return self.cgroups.enforced if self.cgroups is not None else ()

    def cleanup(self) -> None:
        if self.cgroups is not None:
            self.cgroups.cleanup()


def _run_probe(disable_userns: bool, ids: Ids = SERVER_IDS) -> str | None:
    with tempfile.TemporaryDirectory(prefix="wrenn-probe-") as tmp:
        os.chmod(tmp, 0o711)  # reachable by the probe's uid when it is not ours
        rw = Path(tmp) / "rw"
        ensure_rw_skeleton(rw, ids.owner)
        r, w = os.pipe()
        argv = bwrap_argv(
            shutil.which("bwrap") or "bwrap",
            rw,
            "probe",
            w,
            ["/bin/true"],
            disable_userns=disable_userns,
        )
        try:
            proc = subprocess.run(
                as_capsule_root(ids, argv),
                env=HOST_ENV,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                pass_fds=(w,),
                timeout=10,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"bwrap could not run: {exc}"
        finally:
            os.close(w)
            os.close(r)
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip()
            return f"bwrap failed (user namespaces blocked?): {err or proc.returncode}"
    return None


def probe_bwrap() -> str | None:
    """None when a real sandbox boots, else the reason."""
    problem, _ = _probe()
    return problem


def _probe_mapped_root(disable_userns: bool) -> bool:
    """True when, as root, a sandbox also boots as a capsule uid of its own."""
    if os.geteuid() != 0:
        return False
    uid = capsule_uid("probe")
    return _run_probe(disable_userns, Ids(uid, uid, True)) is None


def _probe() -> tuple[str | None, bool]:
    """(problem or None, whether --disable-userns works)."""
    if not sys.platform.startswith("linux"):
        return f"bubblewrap needs Linux (this is {sys.platform})", False
    for tool in ("bwrap", "nsenter", "setpriv", "setsid", "env", "prlimit", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} not found on PATH", False
    if _run_probe(disable_userns=True) is None:
        return None, True
    # Older bubblewrap (< 0.8) or kernels: a sandbox without that guard.
    return _run_probe(disable_userns=False), False


def _cgroups(freezer: str, tag: str) -> tuple[CgroupTree | None, bool]:
    if freezer not in FREEZER_CHOICES:
        raise ValueError(f"freezer must be one of {FREEZER_CHOICES}, not {freezer!r}")
    tree = CgroupTree.create(tag) if sys.platform.startswith("linux") else None
    can_freeze = tree is not None and tree.can_freeze
    if freezer == "cgroup" and not can_freeze:
        if tree is not None:
            tree.cleanup()
        raise RuntimeError("freezer='cgroup' requested but no writable cgroup v2 hierarchy")
    return tree, can_freeze and freezer != "sigstop"


def choose_backend(isolation: str, tag: str, freezer: str = "auto") -> Backend:
    if isolation not in ISOLATION_CHOICES:
        raise ValueError(f"isolation must be one of {ISOLATION_CHOICES}, not {isolation!r}")
    if freezer not in FREEZER_CHOICES:
        raise ValueError(f"freezer must be one of {FREEZER_CHOICES}, not {freezer!r}")
    if isolation == "none":
        return Backend("none", "isolation='none' requested", *_cgroups(freezer, tag))
    problem, disable_userns = _probe()
    if problem is None:
        reason = "bubblewrap sandbox works"
        if not disable_userns:
            reason += " (without --disable-userns: capsules may create user namespaces)"
        maps_root = _probe_mapped_root(disable_userns)
        if os.geteuid() == 0 and not maps_root:
            reason += " (capsule root is host root: bwrap as another uid failed)"
        return Backend(
            "bwrap",
            reason,
            *_cgroups(freezer, tag),
            disable_userns=disable_userns,
            maps_root=maps_root,
        )
    if isolation == "bwrap":
        raise RuntimeError(f"isolation='bwrap' requested but bubblewrap is unusable: {problem}")
    return Backend(
        "none",
        f"falling back to plain subprocesses WITHOUT isolation: {problem}",
        *_cgroups(freezer, tag),
    )
