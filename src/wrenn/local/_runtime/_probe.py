"""Whether bubblewrap sandboxes boot on this host, and with which guards."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ._base import HOST_ENV, ensure_rw_skeleton
from ._bwrap import as_capsule_root, bwrap_argv
from ._contract import Probe
from ._ids import SERVER_IDS, Ids, capsule_uid


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


def probe_bwrap_backend() -> Probe:
    """The bubblewrap backend's probe, for the registry."""
    problem, disable_userns = _probe()
    if problem is not None:
        return Probe(problem)
    reason = "bubblewrap sandbox works"
    if not disable_userns:
        reason += " (without --disable-userns: capsules may create user namespaces)"
    maps_root = _probe_mapped_root(disable_userns)
    if os.geteuid() == 0 and not maps_root:
        reason += " (capsule root is host root: bwrap as another uid failed)"
    return Probe(None, reason, {"disable_userns": disable_userns}, maps_root=maps_root)
