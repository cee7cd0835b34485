"""One microVM: boot or restore a QEMU process, talk to its agent, snapshot, destroy.

Blocking code, every wait bounded; callers in asyncio or trio run it in a worker
thread.  The VM's files (QMP and agent sockets, the qcow2 overlay on the image's
root disk) live in its own directory; the guest console is a 64 KiB ring in QEMU's
memory (guest code could write to a console file without end).  A snapshot is a
directory with the memory stream (``memory``), a copy of the overlay taken while
the guest was stopped (``disk.qcow2``) and the VM's shape (``vm.json``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._agent import AgentChannel, ExecResult
from ._argv import CONSOLE_CHARDEV, CONSOLE_RING_BYTES, VmPaths, qemu_argv, qemu_binary
from ._guest_files import GuestFiles
from ._guest_processes import GuestProcesses
from ._image import Image
from ._qmp import QmpClient, QmpError

_SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes, NUL included
_HOST_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


class VmError(RuntimeError):
    pass


@dataclass(frozen=True)
class VmSpec:
    vcpus: int = 1
    memory_mb: int = 256
    # "tcg" (the software CPU) or "kvm"; a snapshot restores only under its own.
    accel: str = "tcg"
    # The root disk's size; None or less than the image's root filesystem: that size.
    disk_mb: int | None = None


class MicroVm:
    """A running (or paused) QEMU process with a connected agent."""

    def __init__(
        self, process: subprocess.Popen[bytes], paths: VmPaths, spec: VmSpec, image: Image
    ) -> None:
        self.process = process
        self.paths = paths
        self.spec = spec
        self.image = image
        self._qmp: QmpClient | None = None
        self._agent: AgentChannel | None = None
        self._processes: GuestProcesses | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    # -- start ------------------------------------------------------------------

    @classmethod
    def boot(
        cls,
        image: Image,
        directory: Path,
        spec: VmSpec,
        *,
        timeout: float = 60.0,
        reuse_disk: bool = False,
    ) -> MicroVm:
        """Cold-boot a VM whose disk is a fresh overlay on the image's root disk.

        ``reuse_disk``: boot from the overlay already in ``directory`` when there is
        one (a VM that was killed: its files as a power cut left them).
        """
        paths = _prepare(directory)
        with _discard_on_error(paths):
            if not (reuse_disk and paths.disk.is_file()):
                _create_overlay(image, paths, spec.disk_mb)
            vm = cls._spawn(image, paths, spec, incoming=False)
        deadline = time.monotonic() + timeout
        try:
            vm._connect(timeout)
            vm.agent.handshake(max(1.0, deadline - time.monotonic()))
        except (OSError, RuntimeError) as exc:
            tail = vm._console_tail()  # while QEMU, which holds it, still runs
            vm.destroy()
            raise VmError(f"boot failed: {exc}{tail}") from exc
        except BaseException:
            vm.destroy()
            raise
        return vm

    @classmethod
    def restore(
        cls, image: Image, snapshot: Path, directory: Path, *, timeout: float = 30.0
    ) -> MicroVm:
        """Start a new QEMU from a snapshot directory, resume it and set its clock."""
        shape = json.loads((snapshot / "vm.json").read_text())
        spec = VmSpec(
            vcpus=int(shape["vcpus"]),
            memory_mb=int(shape["memory_mb"]),
            accel=str(shape.get("accel", "tcg")),
        )
        paths = _prepare(directory)
        with _discard_on_error(paths):
            shutil.copyfile(snapshot / "disk.qcow2", paths.disk)
            vm = cls._spawn(image, paths, spec, incoming=True)
        try:
            vm._connect(timeout)
            uri = f"exec:cat {shlex.quote(str(snapshot / 'memory'))}"
            vm.qmp.execute("migrate-incoming", {"uri": uri})
            vm._wait_migration(timeout, incoming=True)
            vm.qmp.execute("cont")
            vm.agent.handshake(timeout)
            # The guest's wall clock stopped at snapshot time (MICROVM-NOTES), and its
            # random generator is the snapshot's, shared with every other restore.
            vm.agent.set_clock()
            vm.agent.reseed()
        except (OSError, RuntimeError) as exc:
            tail = vm._console_tail()  # while QEMU, which holds it, still runs
            vm.destroy()
            raise VmError(f"restore failed: {exc}{tail}") from exc
        except BaseException:
            vm.destroy()
            raise
        return vm

    @classmethod
    def _spawn(cls, image: Image, paths: VmPaths, spec: VmSpec, *, incoming: bool) -> MicroVm:
        argv = qemu_argv(
            qemu=qemu_binary(),
            vmlinux=image.vmlinux,
            initramfs=image.initramfs,
            paths=paths,
            vcpus=spec.vcpus,
            memory_mb=spec.memory_mb,
            accel=spec.accel,
            incoming=incoming,
        )
        with open(paths.directory / "qemu.log", "ab") as log:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=_HOST_ENV,
                cwd=paths.directory,
                start_new_session=True,  # a Ctrl-C meant for the host does not reach QEMU
            )
        return cls(process, paths, spec, image)

    def _connect(self, timeout: float) -> None:
        self._qmp = QmpClient.connect(self.paths.qmp, timeout)
        self._agent = AgentChannel.connect(self.paths.agent, timeout)
        self._processes = GuestProcesses(self._agent)

    def _console_tail(self, lines: int = 15) -> str:
        if self._qmp is None:
            return ""
        try:
            text = str(
                self._qmp.execute(
                    "ringbuf-read",
                    {"device": CONSOLE_CHARDEV, "size": CONSOLE_RING_BYTES, "format": "utf8"},
                    timeout=2.0,
                )
            )
        except (QmpError, OSError, RuntimeError):
            return ""
        return "\nguest console (last lines):\n" + "\n".join(text.splitlines()[-lines:])

    # -- use --------------------------------------------------------------------

    @property
    def qmp(self) -> QmpClient:
        if self._qmp is None:
            raise VmError("the VM is not running")
        return self._qmp

    @property
    def agent(self) -> AgentChannel:
        if self._agent is None:
            raise VmError("the VM is not running")
        return self._agent

    def exec(
        self,
        argv: list[str],
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        timeout: float = 30.0,
    ) -> ExecResult:
        return self.agent.exec(argv, env=env, cwd=cwd, timeout=timeout)

    @property
    def files(self) -> GuestFiles:
        """The guest's own filesystem, through the agent (paths are the guest's)."""
        return GuestFiles(self.agent)

    @property
    def processes(self) -> GuestProcesses:
        """Long-running processes in the guest, with streamed output (``start``)."""
        if self._processes is None:
            raise VmError("the VM is not running")
        return self._processes

    def ping(self, timeout: float = 5.0) -> dict[str, Any]:
        return self.agent.request({"op": "ping"}, timeout)

    def status(self) -> str:
        answer = self.qmp.execute("query-status")
        return str(answer["status"])

    def pause(self) -> None:
        self.qmp.execute("stop")

    def resume(self) -> None:
        self.qmp.execute("cont")

    # -- snapshot ---------------------------------------------------------------

    def snapshot(self, destination: Path, *, timeout: float = 60.0) -> Path:
        """Stop the guest and write its memory and disk to ``destination`` (a new dir).

        The VM stays paused afterwards: ``resume()`` continues it, ``destroy()``
        ends it, and ``MicroVm.restore(destination)`` brings the snapshot back in
        another QEMU process.
        """
        destination.mkdir(parents=True, exist_ok=False)
        self.qmp.execute("stop")
        # The default bandwidth cap (32 MiB/s) would make a 256 MiB guest take seconds.
        self.qmp.execute("migrate-set-parameters", {"max-bandwidth": 1 << 40})
        memory = destination / "memory"
        self.qmp.execute("migrate", {"uri": f"exec:cat > {shlex.quote(str(memory))}"})
        self._wait_migration(timeout, incoming=False)
        # QEMU flushed and released the disk at the end of the migration, so the
        # overlay is consistent with the memory stream while the guest stays stopped.
        shutil.copyfile(self.paths.disk, destination / "disk.qcow2")
        shape = {
            "vcpus": self.spec.vcpus,
            "memory_mb": self.spec.memory_mb,
            "accel": self.spec.accel,
        }
        (destination / "vm.json").write_text(json.dumps(shape) + "\n")
        return destination

    def _wait_migration(self, timeout: float, *, incoming: bool) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise VmError(f"QEMU exited with {self.process.returncode} during migration")
            if incoming:
                status = str(self.qmp.execute("query-status")["status"])
                if status in ("paused", "prelaunch"):  # -S: the load is done, not yet running
                    return
                if status not in ("inmigrate", "restore-vm"):
                    raise VmError(f"restore ended in state {status!r}")
            else:
                answer = self.qmp.execute("query-migrate")
                status = str(answer.get("status", ""))
                if status == "completed":
                    return
                if status in ("failed", "cancelled"):
                    raise VmError(f"snapshot failed: {answer.get('error-desc', status)}")
            time.sleep(0.01)
        raise VmError(f"migration did not finish within {timeout} s")

    # -- end --------------------------------------------------------------------

    def destroy(self, timeout: float = 5.0) -> None:
        """End QEMU: ``quit`` over QMP, then SIGKILL to the pid we started; always reaped."""
        if self.process.poll() is None and self._qmp is not None:
            try:
                self._qmp.execute("quit", timeout=min(2.0, timeout))
            except (QmpError, OSError):
                pass  # it may close the socket before answering; the wait below decides
        elif self.process.poll() is None:
            timeout = 0.0  # no QMP to ask: straight to SIGKILL
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.kill(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=10.0)
        for channel in (self._qmp, self._agent):
            if channel is not None:
                channel.close()
        self._qmp = None
        self._agent = None
        self._processes = None
        if self.paths.sockets is not None:
            shutil.rmtree(self.paths.sockets, ignore_errors=True)

    def __enter__(self) -> MicroVm:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.destroy()


def _prepare(directory: Path) -> VmPaths:
    directory.mkdir(parents=True, exist_ok=True)
    paths = VmPaths(directory.resolve())
    if not _sockets_fit(paths):
        # A deep state dir: the sockets go to a private (0700) temporary dir,
        # removed by destroy().
        paths = VmPaths(paths.directory, Path(tempfile.mkdtemp(prefix="wrenn-vm-")))
        if not _sockets_fit(paths):
            shutil.rmtree(paths.sockets or "", ignore_errors=True)
            raise VmError(f"socket path too long for a unix socket: {paths.agent}")
    for sock in (paths.qmp, paths.agent):
        sock.unlink(missing_ok=True)
    return paths


@contextlib.contextmanager
def _discard_on_error(paths: VmPaths) -> Iterator[None]:
    """Until a QEMU process exists (whose destroy() cleans up): remove a socket dir."""
    try:
        yield
    except BaseException:
        if paths.sockets is not None:
            shutil.rmtree(paths.sockets, ignore_errors=True)
        raise


def _sockets_fit(paths: VmPaths) -> bool:
    return all(len(str(sock).encode()) <= _SOCKET_PATH_MAX for sock in (paths.qmp, paths.agent))


def _create_overlay(image: Image, paths: VmPaths, disk_mb: int | None) -> None:
    """A fresh qcow2 overlay whose read-only backing file is the image's root disk,
    ``disk_mb`` large when that is more than the image's (the guest grows its
    filesystem to the device at boot)."""
    base = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw"]
    size = [] if disk_mb is None else [f"{max(disk_mb, image.rootfs.stat().st_size >> 20)}M"]
    _run_host([*base, "-b", str(image.rootfs), str(paths.disk), *size])


def _run_host(argv: list[str]) -> None:
    done = subprocess.run(
        argv, env=_HOST_ENV, stdin=subprocess.DEVNULL, capture_output=True, timeout=60
    )
    if done.returncode != 0:
        raise VmError(f"{argv[0]} failed: {done.stderr.decode(errors='replace').strip()}")
