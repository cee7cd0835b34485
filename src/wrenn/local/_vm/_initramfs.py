"""The tiny initramfs: busybox, the virtio/ext4 modules and an ``/init`` that mounts the disk.

Debian's kernel has virtio-mmio, virtio-blk, virtio-console and ext4 as modules,
so something must load them before the root disk can be mounted.  That is a
busybox shell script here (busybox-static from the host's package), written into
a ``newc`` cpio archive by this module, which also lets it add ``/dev/console``
without root or ``mknod``.  It then ``switch_root``s into the disk and execs the
Python agent as PID 1.
"""

from __future__ import annotations

import stat
from pathlib import Path

AGENT_PATH_IN_GUEST = "/opt/wrenn/agent.py"

INIT_SCRIPT = f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /newroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for module in $(cat /modules.order); do insmod "/modules/$module" || echo "insmod $module failed"; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
mount -t ext4 -o rw,noatime /dev/vda /newroot || {{ echo "wrenn: cannot mount /dev/vda"; poweroff -f; }}
mount --move /dev /newroot/dev
umount /proc /sys
exec switch_root /newroot /usr/bin/python3 -I -u {AGENT_PATH_IN_GUEST}
"""


class _Cpio:
    """A ``newc`` (SVR4, no CRC) archive, which is what the kernel unpacks."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._ino = 1

    def add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = (
            self._ino,
            mode,
            0,  # uid
            0,  # gid
            1,  # nlink
            0,  # mtime: fixed, so the archive is reproducible
            len(data),
            0,  # dev major
            0,  # dev minor
            rdev[0],
            rdev[1],
            len(encoded),
            0,  # check
        )
        self._ino += 1
        header = b"070701" + b"".join(b"%08X" % value for value in fields)
        self._parts.append(_pad4(header + encoded))
        self._parts.append(_pad4(data))

    def finish(self) -> bytes:
        self.add("TRAILER!!!", 0)
        return b"".join(self._parts)


def _pad4(blob: bytes) -> bytes:
    return blob + b"\0" * (-len(blob) % 4)


def build_initramfs(busybox: Path, modules: list[Path]) -> bytes:
    archive = _Cpio()
    for directory in ("bin", "dev", "modules", "proc", "sys", "newroot"):
        archive.add(directory, stat.S_IFDIR | 0o755)
    # The kernel opens /dev/console for init before init runs; without the node
    # init would start with no stdin, stdout or stderr.
    archive.add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    archive.add("bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes())
    archive.add("init", stat.S_IFREG | 0o755, INIT_SCRIPT.encode())
    order = []
    for module in modules:
        archive.add(f"modules/{module.name}", stat.S_IFREG | 0o644, module.read_bytes())
        order.append(module.name)
    archive.add("modules.order", stat.S_IFREG | 0o644, ("\n".join(order) + "\n").encode())
    return archive.finish()
