"""A microVM engine for ``wrenn.local``: QEMU ``-M microvm`` guests with a Python agent.

Not wired into the server yet: this package is the engine a VM backend will use.
It boots a guest, runs commands and long-running processes (streamed output,
stdin, signals, a pty) in it through an agent on virtio-serial, writes
memory snapshots (running processes included) and restores them into a new QEMU
process.  It uses the software CPU (TCG) because the KVM of the machines it was
built on is a software scheme stock guest kernels do not survive (see
``/work/shared/MICROVM-NOTES.md`` of the project).

Host packages (Debian 12 names; all used from the host, none shipped in the wheel,
several are GPL-2.0):

    apt-get install qemu-system-x86 qemu-utils linux-image-amd64 busybox-static \
        mmdebstrap e2fsprogs

- ``qemu-system-x86`` runs the VMs, ``qemu-utils`` (``qemu-img``) makes each VM's
  qcow2 overlay;
- ``linux-image-amd64``: the guest kernel is the host's newest installed Debian
  kernel (its ``vmlinuz`` payload is decompressed to an ELF and booted via PVH);
- ``busybox-static`` is the initramfs that loads the virtio/ext4 modules;
- ``mmdebstrap`` (and ``e2fsprogs``' ``mke2fs``) build the Debian minbase +
  python3 root disk from the host's own apt sources.

Build the image with ``build_image()`` or ``python -m wrenn.local._vm build-image``.
"""

from __future__ import annotations

from ._agent import AgentError, ExecResult
from ._engine import MicroVm, VmError, VmSpec
from ._guest_files import GuestEntry, GuestFiles
from ._guest_processes import GuestProcess, GuestProcesses, OutputChunk
from ._image import Image, ImageError, build_image, default_cache_dir

__all__ = [
    "AgentError",
    "ExecResult",
    "GuestEntry",
    "GuestFiles",
    "GuestProcess",
    "GuestProcesses",
    "Image",
    "ImageError",
    "MicroVm",
    "OutputChunk",
    "VmError",
    "VmSpec",
    "build_image",
    "default_cache_dir",
]
