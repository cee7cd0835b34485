"""The host's Debian kernel: its decompressed ELF (for PVH boot) and the modules a VM needs.

QEMU's microvm boots an uncompressed ``vmlinux`` straight through its PVH ELF note,
with no firmware and no decompressor.  Debian ships only ``vmlinuz`` (a bzImage
whose payload is XZ-compressed), so the payload is found by its magic bytes and
decompressed here.  Nothing of the kernel is shipped in the wheel.
"""

from __future__ import annotations

import lzma
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

# Modules (by name) the initramfs loads before it can mount the root disk and
# the agent port shows up; their dependencies are added from ``modules.dep``.
# ext4 and jbd2 ask the crypto API for "crc32c" whatever the features of the disk.
NEEDED_MODULES = ("virtio_mmio", "virtio_blk", "virtio_console", "crc32c_generic", "ext4")

_XZ_MAGIC = b"\xfd7zXZ\x00"
_GZIP_MAGIC = b"\x1f\x8b\x08"
_ELF_MAGIC = b"\x7fELF"


class KernelError(RuntimeError):
    pass


@dataclass(frozen=True)
class HostKernel:
    release: str  # e.g. 6.1.0-57-amd64
    vmlinuz: Path
    modules_dir: Path  # /lib/modules/<release>


def find_kernel(
    boot_dir: Path = Path("/boot"), modules_root: Path = Path("/lib/modules")
) -> HostKernel:
    """The newest installed kernel that has both a vmlinuz and its modules."""
    candidates: list[HostKernel] = []
    for vmlinuz in boot_dir.glob("vmlinuz-*"):
        release = vmlinuz.name.removeprefix("vmlinuz-")
        modules = modules_root / release
        if (modules / "modules.dep").is_file() and os.access(vmlinuz, os.R_OK):
            candidates.append(HostKernel(release, vmlinuz, modules))
    if not candidates:
        raise KernelError(
            f"no readable {boot_dir}/vmlinuz-* with modules under {modules_root}: "
            "install a Debian kernel (apt-get install linux-image-amd64)"
        )
    return max(candidates, key=lambda k: _release_key(k.release))


def _release_key(release: str) -> tuple[int, ...]:
    parts: list[int] = []
    for token in release.replace("-", ".").split("."):
        if token.isdigit():
            parts.append(int(token))
    return tuple(parts)


def extract_vmlinux(vmlinuz: Path) -> bytes:
    """The ELF image inside a bzImage: try each compressed stream until one is an ELF."""
    data = vmlinuz.read_bytes()
    for magic, decompress in ((_XZ_MAGIC, _unxz), (_GZIP_MAGIC, _gunzip)):
        start = data.find(magic)
        while start != -1:
            payload = decompress(data[start:])
            if payload is not None and payload.startswith(_ELF_MAGIC):
                return payload
            start = data.find(magic, start + 1)
    raise KernelError(
        f"{vmlinuz}: no XZ or gzip payload that is an ELF image "
        "(other compressions such as zstd are not supported)"
    )


def _unxz(blob: bytes) -> bytes | None:
    try:
        # A decompressor object stops at the end of the stream and ignores the
        # bzImage's trailing bytes, which ``lzma.decompress`` would reject.
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(blob)
    except lzma.LZMAError:
        return None


def _gunzip(blob: bytes) -> bytes | None:
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(blob)
    except zlib.error:
        return None


def module_files(kernel: HostKernel, names: tuple[str, ...] = NEEDED_MODULES) -> list[Path]:
    """The ``.ko`` files for ``names`` and their dependencies, in load order."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (kernel.modules_dir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        by_name[_module_name(path)] = path
    builtin = _builtin_names(kernel)
    ordered: list[str] = []

    def visit(path: str, chain: tuple[str, ...]) -> None:
        if path in ordered or path in chain:
            return
        for dep in deps.get(path, []):
            visit(dep, (*chain, path))
        ordered.append(path)

    for name in names:
        if name in builtin:
            continue
        if name not in by_name:
            raise KernelError(f"kernel {kernel.release} has no module {name!r}")
        visit(by_name[name], ())
    for path in ordered:
        if path.endswith((".xz", ".zst", ".gz")):
            raise KernelError(f"compressed module {path}: busybox insmod cannot load it")
    return [kernel.modules_dir / path for path in ordered]


def _module_name(path: str) -> str:
    return Path(path).name.split(".", 1)[0].replace("-", "_")


def _builtin_names(kernel: HostKernel) -> set[str]:
    builtin = kernel.modules_dir / "modules.builtin"
    if not builtin.is_file():
        return set()
    return {_module_name(line) for line in builtin.read_text().split()}
