"""Whether KVM really runs a guest here: probed by booting one, never by ``/dev/kvm``.

On some hosts ``/dev/kvm`` opens and creates VMs, yet stock guests do not survive
it (a software nested scheme: QEMU aborts on the first MSR it sets).  So the
probe boots the image under KVM and runs ``true``.  Its answer is kept beside
the image (``kvm-probe.json``), keyed by the QEMU binary and the host kernel,
so a server pays the boot once per host, not at every start.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ._argv import qemu_binary
from ._engine import MicroVm, VmSpec
from ._image import Image

PROBE_TIMEOUT = 30.0  # seconds for a KVM guest to boot and answer
RECORD = "kvm-probe.json"


def _host_key() -> str:
    qemu = Path(qemu_binary())
    info = qemu.stat()
    return f"{qemu} {info.st_size} {info.st_mtime_ns} kernel {os.uname().release}"


def kvm_problem(image: Image) -> str | None:
    """None when a guest boots and runs a command under KVM on this host, else why not."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "no usable /dev/kvm"
    key = _host_key()
    record = image.directory / RECORD
    try:
        known = json.loads(record.read_text())
        if known.get("key") == key:
            problem = known.get("problem")
            return None if problem is None else str(problem)
    except (OSError, ValueError, AttributeError):
        pass
    problem = _boot_once(image)
    partial = record.with_name(f".{RECORD}.{os.getpid()}")
    try:
        partial.write_text(json.dumps({"key": key, "problem": problem}) + "\n")
        partial.rename(record)
    except OSError:
        partial.unlink(missing_ok=True)  # an unwritable cache: probe again next time
    return problem


def _boot_once(image: Image) -> str | None:
    work = Path(tempfile.mkdtemp(prefix="wrenn-kvm-probe-"))
    try:
        vm = MicroVm.boot(image, work / "vm", VmSpec(accel="kvm"), timeout=PROBE_TIMEOUT)
        try:
            result = vm.exec(["true"], timeout=PROBE_TIMEOUT)
        finally:
            vm.destroy()
    except Exception as exc:  # any failure means: not here
        # QEMU's own last words say more than a reset agent socket.
        why = _last_line(work / "vm" / "qemu.log") or str(exc).splitlines()[0] or repr(exc)
        return f"a guest does not run under KVM here ({why[:200]})"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if result.exit_code != 0:
        return f"a guest under KVM ran `true` with status {result.exit_code}"
    return None


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""
