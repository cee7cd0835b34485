"""The base image: kernel ELF, initramfs and a Debian minbase + python3 root disk, cached.

``build_image()`` is idempotent and atomic: the image lives in
``<cache>/<version hash>/``, is built in a temporary sibling directory and renamed
into place when complete, so a half-built image is never used and a second
build of the same version is a no-op.  The hash covers everything that goes in
(the agent's source and its modules, the init script, the kernel, busybox, the suite and the
package list), so changing any of them builds a new image beside the old one.

Why a Debian root disk rather than a busybox initramfs only: the guest agent is
Python (our own code, able to grow a files API and PTYs), and a snapshot restore
makes the slower cold boot (4 s against 2.5 s, see MICROVM-NOTES) rare.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import _initramfs, _kernel

log = logging.getLogger("wrenn.local.vm")

FORMAT = 4  # bump when the layout of an image directory changes
GUEST_PACKAGES = ("python3", "iproute2", "procps")
# Sparse; each VM's qcow2 overlay is its disk_size_mb (never less than this), and the
# guest grows the filesystem to it at boot.
ROOTFS_SIZE_MB = 1024
_TRIM = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")
BUSYBOX = Path("/bin/busybox")
SOURCE = Path(__file__).with_name("guest_agent.py")
# Modules the agent imports, copied next to it in the guest under the same names.
GUEST_MODULES = tuple(
    Path(__file__).with_name(name) for name in ("guest_processes.py", "guest_files.py")
)


class ImageError(RuntimeError):
    pass


@dataclass(frozen=True)
class Image:
    directory: Path
    vmlinux: Path  # decompressed kernel ELF, booted through PVH
    initramfs: Path
    rootfs: Path  # raw ext4, the read-only backing file of every VM's overlay
    kernel_release: str


def default_cache_dir() -> Path:
    if env := os.environ.get("WRENN_VM_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wrenn" / "vm"


def host_suite() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    raise ImageError("/etc/os-release names no VERSION_CODENAME: pass suite=")


def _version(kernel: _kernel.HostKernel, suite: str) -> str:
    digest = hashlib.sha256()
    digest.update(f"format {FORMAT}\nsuite {suite}\npackages {GUEST_PACKAGES}\n".encode())
    digest.update(f"rootfs {ROOTFS_SIZE_MB}\ntrim {_TRIM}\n".encode())
    for source in (SOURCE, *GUEST_MODULES):
        digest.update(source.read_bytes())
    digest.update(_initramfs.INIT_SCRIPT.encode())
    for path in (kernel.vmlinuz, BUSYBOX):
        info = path.stat()
        digest.update(f"{path} {info.st_size} {info.st_mtime_ns}\n".encode())
    return f"{kernel.release}-{digest.hexdigest()[:16]}"


def _image_at(directory: Path) -> Image:
    manifest = json.loads((directory / "image.json").read_text())
    return Image(
        directory=directory,
        vmlinux=directory / "vmlinux",
        initramfs=directory / "initramfs.cpio",
        rootfs=directory / "rootfs.ext4",
        kernel_release=str(manifest["kernel_release"]),
    )


def cached_image(cache_dir: Path | None = None) -> Image | None:
    """The image for this host's kernel and the current agent if it is built, else None."""
    kernel = _kernel.find_kernel()
    final = (cache_dir or default_cache_dir()) / _version(kernel, host_suite())
    return _image_at(final) if (final / "image.json").is_file() else None


def build_image(cache_dir: Path | None = None, *, suite: str | None = None) -> Image:
    """The image for this host's kernel and the current agent, built if missing."""
    cache = cache_dir or default_cache_dir()
    kernel = _kernel.find_kernel()
    suite = suite or host_suite()
    version = _version(kernel, suite)
    final = cache / version
    if (final / "image.json").is_file():
        log.info("vm image %s is cached at %s", version, final)
        return _image_at(final)
    for tool in ("mmdebstrap", "mke2fs"):
        if shutil.which(tool) is None:
            raise ImageError(f"{tool} not found: apt-get install mmdebstrap e2fsprogs")
    if not BUSYBOX.is_file():
        raise ImageError(f"{BUSYBOX} not found: apt-get install busybox-static")
    cache.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f".build-{version}-", dir=cache))
    try:
        _build_into(work, kernel, suite)
        manifest = {
            "version": version,
            "kernel_release": kernel.release,
            "suite": suite,
            "packages": list(GUEST_PACKAGES),
            "build_seconds": round(time.monotonic() - started, 2),
        }
        (work / "image.json").write_text(json.dumps(manifest, indent=2) + "\n")
        try:
            os.rename(work, final)
        except OSError:
            if not (final / "image.json").is_file():
                raise
            log.info("vm image %s was built concurrently; using that one", version)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("vm image %s built in %.1f s at %s", version, time.monotonic() - started, final)
    return _image_at(final)


def _build_into(work: Path, kernel: _kernel.HostKernel, suite: str) -> None:
    log.info("vm image: extracting the kernel ELF from %s", kernel.vmlinuz)
    (work / "vmlinux").write_bytes(_kernel.extract_vmlinux(kernel.vmlinuz))
    modules = _kernel.module_files(kernel)
    log.info("vm image: initramfs with busybox and %d modules", len(modules))
    (work / "initramfs.cpio").write_bytes(_initramfs.build_initramfs(BUSYBOX, modules))
    tree = work / "tree"
    log.info(
        "vm image: mmdebstrap %s minbase + %s (about 20-60 s)", suite, ",".join(GUEST_PACKAGES)
    )
    argv = [
        "mmdebstrap",
        "--quiet",
        "--variant=minbase",
        f"--include={','.join(GUEST_PACKAGES)}",
        *(f"--dpkgopt=path-exclude={pattern}" for pattern in _TRIM),
        suite,
        str(tree),
    ]
    _run(argv, timeout=900)
    agent = tree / _initramfs.AGENT_PATH_IN_GUEST.lstrip("/")
    agent.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SOURCE, agent)
    for module in GUEST_MODULES:
        shutil.copyfile(module, agent.with_name(module.name))
    (tree / "etc" / "hostname").write_text("wrenn\n")
    # The working directory the API's examples use, as on the other backends.
    (tree / "workspace").mkdir(exist_ok=True)
    for cache in ("var/cache/apt", "var/lib/apt/lists"):
        shutil.rmtree(tree / cache, ignore_errors=True)
        (tree / cache).mkdir(parents=True, exist_ok=True)
    log.info("vm image: writing the ext4 root disk (%d MiB, sparse)", ROOTFS_SIZE_MB)
    _run(
        [
            "mke2fs", "-q", "-F", "-t", "ext4", "-L", "wrenn-root",
            "-d", str(tree), str(work / "rootfs.ext4"), f"{ROOTFS_SIZE_MB}M",
        ],
        timeout=300,
    )  # fmt: skip
    shutil.rmtree(tree)


def _run(argv: list[str], *, timeout: float) -> None:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
    try:
        done = subprocess.run(
            argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise ImageError(f"{argv[0]} took more than {timeout:.0f} s") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).decode(errors="replace")[-2000:]
        raise ImageError(f"{argv[0]} failed with status {done.returncode}: {tail}")
