"""Pick the isolation backend once at start-up, and say why."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ._base import Sandbox, ensure_rw_skeleton
from ._bwrap import BwrapSandbox, bwrap_argv
from ._freeze import cgroup_parent
from ._plain import PlainSandbox

ISOLATION_CHOICES = ("auto", "bwrap", "none")


@dataclass
class Backend:
    kind: str  # "bwrap" or "none"
    reason: str  # why this backend (and why not a better one)
    cgroup: Path | None  # parent cgroup for capsule freezers, None means SIGSTOP

    def sandbox(
        self, capsule_id: str, capsule_dir: Path, ro_binds: tuple[str, ...] = ()
    ) -> Sandbox:
        cg = self.cgroup / capsule_id if self.cgroup is not None else None
        if self.kind == "bwrap":
            return BwrapSandbox(capsule_id, capsule_dir, cg, ro_binds)
        return PlainSandbox(capsule_id, capsule_dir, cg, ro_binds)

    @property
    def freeze_mode(self) -> str:
        return "cgroup" if self.cgroup is not None else "sigstop"

    def cleanup(self) -> None:
        if self.cgroup is not None:
            with contextlib.suppress(OSError):
                self.cgroup.rmdir()


def probe_bwrap() -> str | None:
    """None when a real sandbox boots and nsenter can join it, else the reason."""
    if not sys.platform.startswith("linux"):
        return f"bubblewrap needs Linux (this is {sys.platform})"
    for tool in ("bwrap", "nsenter", "setpriv", "setsid"):
        if shutil.which(tool) is None:
            return f"{tool} not found on PATH"
    with tempfile.TemporaryDirectory(prefix="wrenn-probe-") as tmp:
        rw = Path(tmp) / "rw"
        ensure_rw_skeleton(rw)
        r, w = os.pipe()
        try:
            proc = subprocess.run(
                bwrap_argv(shutil.which("bwrap") or "bwrap", rw, "probe", w, ["/bin/true"]),
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


FREEZER_CHOICES = ("auto", "cgroup", "sigstop")


def _freezer_cgroup(freezer: str, tag: str) -> Path | None:
    if freezer not in FREEZER_CHOICES:
        raise ValueError(f"freezer must be one of {FREEZER_CHOICES}, not {freezer!r}")
    if freezer == "sigstop":
        return None
    cgroup = cgroup_parent(tag)
    if cgroup is None and freezer == "cgroup":
        raise RuntimeError("freezer='cgroup' requested but no writable cgroup v2 hierarchy")
    return cgroup


def choose_backend(isolation: str, tag: str, freezer: str = "auto") -> Backend:
    if isolation not in ISOLATION_CHOICES:
        raise ValueError(f"isolation must be one of {ISOLATION_CHOICES}, not {isolation!r}")
    if isolation == "none":
        return Backend("none", "isolation='none' requested", _freezer_cgroup(freezer, tag))
    problem = probe_bwrap()
    if problem is None:
        return Backend("bwrap", "bubblewrap sandbox works", _freezer_cgroup(freezer, tag))
    if isolation == "bwrap":
        raise RuntimeError(f"isolation='bwrap' requested but bubblewrap is unusable: {problem}")
    return Backend(
        "none",
        f"falling back to plain subprocesses WITHOUT isolation: {problem}",
        _freezer_cgroup(freezer, tag),
    )
