"""The QEMU command line of a VM, in one place (a cold boot and a restore share it).

A memory snapshot restores only into a QEMU started with the same machine,
devices, vcpus and memory, so both paths build their argv here and differ only
by ``incoming``.  The options are the ones MICROVM-NOTES found to work with TCG.
"""

from __future__ import annotations

import functools
import shutil
from dataclasses import dataclass
from pathlib import Path

AGENT_PORT = "wrenn.agent"  # the guest agent looks its port up by this name
CONSOLE_CHARDEV = "console"
CONSOLE_RING_BYTES = 64 * 1024  # the guest console's last bytes, kept by QEMU (a power of 2)
QEMU_BINARY = "qemu-system-x86_64"
_KERNEL_HZ = 250  # CONFIG_HZ of Debian's amd64 kernels


@dataclass(frozen=True)
class VmPaths:
    """The per-VM files: sockets and disk overlay, in one directory.

    ``sockets``: a short private directory for the two unix sockets instead, when
    their paths under ``directory`` would not fit in ``sun_path``.
    """

    directory: Path
    sockets: Path | None = None

    @property
    def qmp(self) -> Path:
        return (self.sockets or self.directory) / "qmp.sock"

    @property
    def agent(self) -> Path:
        return (self.sockets or self.directory) / "agent.sock"

    @property
    def disk(self) -> Path:
        return self.directory / "disk.qcow2"


@functools.cache
def host_tsc_khz() -> int:
    """The host's TSC rate, which a TCG guest's TSC runs at (it reads the host's).

    Passing it as ``tsc_early_khz`` (with ``lpj``, ``tsc=reliable`` and
    ``no_timer_check``) stops the guest from calibrating against emulated timers:
    without it about a third of TCG boots hang at "tsc: Marking TSC unstable".
    """
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz"):
            return round(float(line.split(":", 1)[1]) * 1000)
    return 2_000_000  # no figure: a plausible one still skips the calibration


def kernel_cmdline() -> str:
    khz = host_tsc_khz()
    return " ".join(
        (
            "console=ttyS0",
            "loglevel=4",
            "panic=-1",  # a panic reboots, and -no-reboot turns that into QEMU exiting
            f"tsc_early_khz={khz}",
            f"lpj={khz * 1000 // _KERNEL_HZ}",
            "tsc=reliable",
            "no_timer_check",
            "random.trust_cpu=on",
        )
    )


def qemu_binary() -> str:
    found = shutil.which(QEMU_BINARY)
    if found is None:
        raise FileNotFoundError(f"{QEMU_BINARY} not found: apt-get install qemu-system-x86")
    return found


def qemu_argv(
    *,
    qemu: str,
    vmlinux: Path,
    initramfs: Path,
    paths: VmPaths,
    vcpus: int,
    memory_mb: int,
    accel: str = "tcg",
    incoming: bool = False,
) -> list[str]:
    accel_option = "tcg,thread=multi,tb-size=64" if accel == "tcg" else accel
    argv = [
        qemu,
        "-M", "microvm,x-option-roms=off,pit=on,pic=on,isa-serial=on,rtc=on",
        "-accel", accel_option,
        "-cpu", "max" if accel == "tcg" else "host",
        "-smp", str(vcpus),
        "-m", f"{memory_mb}M",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-nic", "none",
        # QEMU's seccomp filter: no privilege changes and no resource-control calls
        # from a QEMU a guest may have subverted; spawning stays allowed, since
        # snapshots stream through ``exec:cat``.
        "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=allow,resourcecontrol=deny",
        "-kernel", str(vmlinux),
        "-initrd", str(initramfs),
        "-append", kernel_cmdline(),
        # The console goes to a ring in QEMU's memory, never to a host file: guest
        # code can write to it without end (the engine reads it after a failed boot).
        "-chardev", f"ringbuf,id={CONSOLE_CHARDEV},size={CONSOLE_RING_BYTES}",
        "-serial", f"chardev:{CONSOLE_CHARDEV}",
        "-qmp", f"unix:{paths.qmp},server=on,wait=off",
        "-device", "virtio-serial-device",
        "-chardev", f"socket,id=agent,path={paths.agent},server=on,wait=off",
        "-device", f"virtserialport,chardev=agent,name={AGENT_PORT}",
        "-drive", f"id=root,file={paths.disk},format=qcow2,if=none,cache=writeback",
        "-device", "virtio-blk-device,drive=root",
    ]  # fmt: skip
    if incoming:
        # Wait for ``migrate-incoming`` and stay paused after it (-S): the caller
        # decides when the guest runs again (``cont``).
        argv += ["-incoming", "defer", "-S"]
    return argv
