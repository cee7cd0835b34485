"""The microVM backend: each capsule is a QEMU ``-M microvm`` guest (``wrenn.local._vm``).

- Boot restores a snapshot rather than booting cold: the capsule's own paused
  state when it has one (a pause before a server restart, or the snapshot
  template it was created from), else the pre-booted base snapshot of its shape
  (``_vm._base_snapshot``).  A capsule that was running when its VM stopped boots
  cold from its own disk overlay (synced by ``destroy``; as a power cut left it
  when the VM was killed).
- Pause is a memory snapshot written to ``<capsule>/state`` (memory, disk, shape)
  while the guest is stopped; the QEMU process stays, stopped, so a resume in the
  same server is a ``cont`` and the server keeps its processes.  A server that
  stops destroys the VM and keeps the state, and the capsule's next boot restores
  it, running processes and all (the manager freezes running capsules of this
  backend before its stop, so they come back the same way).  ``state`` exists only while the capsule is
  paused, or seeded from a template and not yet booted: a boot consumes it.
- A snapshot template is that state (``save_layer``); a capsule created from one
  restores it, so it finds the source's processes running.
- Files go through the guest agent (``_vm._capsule_files``), answering as the
  host backends' files API does.
- A terminal is a pty in the guest, its program a guest process on it, driven
  through the agent (``_vm._terminal``).
- ``vcpus`` and ``memory_mb`` are the VM's own; the guest has no network
  (``-nic none``) and no host directory at all, so code that needs host paths
  (the code runner's interpreter binds) is refused at boot.

Every QEMU call blocks (``_vm`` is thread-based), so it runs in a worker thread;
a boot whose task is cancelled still destroys the VM it made.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .._vm import AgentError, ImageError, MicroVm, VmError, VmSpec
from .._vm._base_snapshot import base_snapshot
from .._vm._capsule_files import VmCapsuleFiles
from .._vm._image import Image, cached_image
from .._vm._kernel import KernelError
from .._vm._kvm import kvm_problem
from .._vm._process import start_vm_process
from .._vm._terminal import open_vm_terminal
from . import _procfs
from ._base import Sandbox
from ._cgroup import Limits
from ._contract import BootError, Capabilities, Probe, Unsupported, Usage
from ._process import CapsuleProcess
from ._terminal import CapsuleTerminal

log = logging.getLogger("wrenn.local")

# Guest vCPUs per host CPU at most: more only adds threads that wait for a core.
MAX_VCPUS_PER_HOST_CPU = 4
_SYNC_TIMEOUT = 3.0  # seconds a stopping guest gets to write its page cache out
_HOST_TOOLS = {"qemu-system-x86_64": "qemu-system-x86", "qemu-img": "qemu-utils"}
_SPEED_CAVEAT = (
    "QEMU -M microvm on the software CPU (TCG): guest code runs several times "
    "slower than on a host CPU; KVM is not used"
)
_WITH_KVM = "QEMU -M microvm with KVM: a guest booted under KVM here"


class VmSandbox(Sandbox):
    kind = "microvm"
    CAPABILITIES = Capabilities(
        isolated=True,
        host_filesystem=False,
        memory_snapshots=True,
        limits=True,  # the VM's own vcpus and memory, whatever the host's cgroups allow
        precheck_exec=False,  # the guest agent reports a missing program or cwd itself
    )

    def __init__(self, *args: Any, image: Image, accel: str = "tcg", **kwargs: Any) -> None:
        # ``Sandbox``'s arguments, plus the guest image and accelerator the probe found.
        super().__init__(*args, **kwargs)
        self.image = image
        self.accel = accel
        self.vm: MicroVm | None = None
        self._frozen = False

    @classmethod
    def probe(cls) -> Probe:
        missing = [pkg for tool, pkg in _HOST_TOOLS.items() if shutil.which(tool) is None]
        if missing:
            return Probe(f"QEMU is missing: apt-get install {' '.join(missing)}")
        try:
            image = cached_image()
        except (ImageError, KernelError, OSError) as exc:
            return Probe(f"no guest kernel or image: {exc}")
        if image is None:
            return Probe(
                "the microVM image is not built: run `python -m wrenn.local build-image` "
                "once (about 30 s; needs mmdebstrap, busybox-static and linux-image-amd64)"
            )
        kvm = kvm_problem(image)
        if kvm is None:
            return Probe(None, _WITH_KVM, options={"image": image, "accel": "kvm"})
        # Not for "auto": without KVM a guest is isolated but slow.
        return Probe(
            None,
            f"{_SPEED_CAVEAT}: {kvm}",
            options={"image": image, "accel": "tcg"},
            automatic=False,
        )

    # -- paths ------------------------------------------------------------------

    @staticmethod
    def _vm_dir(capsule_dir: Path) -> Path:
        return capsule_dir / "vm"

    @staticmethod
    def _state_dir(capsule_dir: Path) -> Path:
        return capsule_dir / "state"

    def _require_vm(self) -> MicroVm:
        if self.vm is None:
            raise OSError("the capsule's microVM is not running")
        return self.vm

    # -- lifecycle --------------------------------------------------------------

    async def _boot(self, prepare: Callable[[], Awaitable[None]] | None) -> None:
        # ``prepare`` readies a host writable layer: a VM's files are on its own disk.
        del prepare
        if self.ro_binds:
            raise BootError(
                "a microVM capsule sees no host directory (the code runner's template "
                "needs the bubblewrap or plain backend)"
            )
        _check_shape(self.limits)
        spec = VmSpec(
            vcpus=self.limits.vcpus,
            memory_mb=self.limits.memory_mb,
            accel=self.accel,
            disk_mb=self.limits.disk_mb,
        )
        started = asyncio.ensure_future(asyncio.to_thread(self._start, spec))
        try:
            self.vm = await asyncio.shield(started)
        except asyncio.CancelledError:
            # The thread runs on: destroy what it makes, then give up.
            with contextlib.suppress(Exception):
                vm = await started
                await asyncio.to_thread(vm.destroy)
            raise
        except (VmError, AgentError, OSError) as exc:
            raise BootError(f"microVM: {exc}") from exc

    def _start(self, spec: VmSpec) -> MicroVm:
        state = self._state_dir(self.dir)
        vm_dir = self._vm_dir(self.dir)
        if (state / "vm.json").is_file():
            vm = MicroVm.restore(self.image, state, vm_dir)
            # Consumed: the VM runs on its own copy of the disk, and a later boot
            # must not go back to this memory.
            shutil.rmtree(state)
            return vm
        if (vm_dir / "disk.qcow2").is_file():
            return MicroVm.boot(self.image, vm_dir, spec, reuse_disk=True)
        return MicroVm.restore(self.image, base_snapshot(self.image, spec), vm_dir)

    async def destroy(self) -> None:
        vm, self.vm = self.vm, None
        if vm is None:
            return
        flush = not self._frozen and vm.process.poll() is None

        def end() -> None:
            if flush:
                # A running guest's page cache reaches its disk first: the next boot
                # of a capsule that was running at a server's stop starts from it.
                with contextlib.suppress(VmError, AgentError, OSError):
                    vm.exec(["sync"], timeout=_SYNC_TIMEOUT)
            vm.destroy()

        await asyncio.to_thread(end)

    @property
    def alive(self) -> bool:
        return self.vm is not None and self.vm.process.poll() is None

    def kill_now(self) -> None:
        if self.vm is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.vm.pid, signal.SIGKILL)

    # -- processes --------------------------------------------------------------

    def start_process(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        *,
        want_pid: bool = True,
    ) -> CapsuleProcess:
        """A process of the guest (see ``Sandbox.start_process`` and ``_vm._process``)."""
        vm = self._require_vm()
        return start_vm_process(vm.processes, argv, env, cwd, want_pid=want_pid)

    def open_terminal(
        self, argv: list[str], env: dict[str, str], cwd: str, cols: int, rows: int
    ) -> CapsuleTerminal:
        """A guest process on a pty of the guest (see ``Sandbox.open_terminal`` and
        ``_vm._terminal``)."""
        return open_vm_terminal(self._require_vm().processes, argv, env, cwd, cols, rows)

    def open_root(self) -> int:
        raise Unsupported("a microVM capsule has no host filesystem")

    def guest_files(self) -> VmCapsuleFiles:
        """The guest's own files, through its agent (the files API's answers and errors)."""
        return VmCapsuleFiles(self._require_vm().files)

    async def usage(self) -> Usage:
        """The QEMU process's CPU time and RSS (the guest's touched memory), and its disk."""
        pid = self._require_vm().pid
        vm_dir = str(self._vm_dir(self.dir))

        def measure() -> Usage:
            return Usage(
                _procfs.cpu_seconds([pid]), _procfs.rss_bytes([pid]), _procfs.disk_usage(vm_dir)
            )

        return await asyncio.to_thread(measure)

    # -- pause ------------------------------------------------------------------

    async def freeze(self) -> None:
        """Stop the guest and write its memory and disk to ``state`` (see the module doc)."""
        if self._frozen:
            return
        vm = self._require_vm()
        await asyncio.to_thread(self._write_state, vm)
        self._frozen = True

    def _write_state(self, vm: MicroVm) -> None:
        state = self._state_dir(self.dir)
        partial = self.dir / ".state-partial"
        shutil.rmtree(partial, ignore_errors=True)
        try:
            vm.snapshot(partial)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            with contextlib.suppress(Exception):
                vm.resume()  # the snapshot stopped the guest first
            raise
        shutil.rmtree(state, ignore_errors=True)
        partial.rename(state)

    async def thaw(self) -> None:
        if not self._frozen:
            return
        vm = self._require_vm()

        def resume() -> None:
            vm.resume()
            # The guest's wall clock stood still while it was stopped.
            vm.agent.set_clock()
            shutil.rmtree(self._state_dir(self.dir), ignore_errors=True)

        await asyncio.to_thread(resume)
        self._frozen = False

    @property
    def is_frozen(self) -> bool:
        return self._frozen

    # -- at rest: the paused state is what a snapshot template holds ----------------

    @classmethod
    def save_layer(cls, capsule_dir: Path, dest: Path, owner: tuple[int, int]) -> None:
        """The capsule's paused state (memory, disk, shape) into template dir ``dest``."""
        del owner  # the files are the server's own, never the capsule's
        state = cls._state_dir(capsule_dir)
        if not (state / "vm.json").is_file():
            raise OSError("the capsule has no memory snapshot (it is not paused)")
        _copy_state(state, dest / "vm")

    @classmethod
    def load_layer(cls, src: Path, capsule_dir: Path, owner: tuple[int, int] | None) -> None:
        """Seed a new capsule with template ``src``'s state: its first boot restores it."""
        del owner
        _copy_state(src / "vm", cls._state_dir(capsule_dir))

    @classmethod
    def layer_bytes(cls, capsule_dir: Path) -> int:
        return _procfs.disk_usage(str(capsule_dir))


def _check_shape(limits: Limits) -> None:
    """Refuse a guest this host cannot hold.  The API takes up to 256 vCPUs and 4 TiB
    (the platform's bounds), and a VM's memory is real: a guest kernel sets up its
    page tables for all of it at boot, so one hostile create could take the host's."""
    host_mb = _procfs.mem_total_mb()
    if host_mb is not None and limits.memory_mb > host_mb // 2:
        raise BootError(
            f"memory_mb={limits.memory_mb} is more than half of this host's {host_mb} MiB"
        )
    most_vcpus = MAX_VCPUS_PER_HOST_CPU * (os.cpu_count() or 1)
    if limits.vcpus > most_vcpus:
        raise BootError(f"vcpus={limits.vcpus} is more than this host runs ({most_vcpus})")


def _copy_state(src: Path, dest: Path) -> None:
    """Copy a snapshot directory; the memory file is only ever read, so it is
    hard-linked when it can be (a template and its capsules share one)."""
    dest.mkdir(parents=True)
    for name in ("disk.qcow2", "vm.json"):
        shutil.copyfile(src / name, dest / name)
    try:
        os.link(src / "memory", dest / "memory")
    except OSError:
        shutil.copyfile(src / "memory", dest / "memory")
