"""Capsules as persistent bubblewrap sandboxes entered with nsenter.

Layout ("host-ro"): the host's /usr, /etc and the merged-usr symlinks are bound
read-only; /root, /tmp, /home and /workspace are per-capsule host directories;
/proc, /dev (with its own devpts) are fresh; every namespace is unshared, so the
network is loopback-only.  Each exec joins the namespaces with nsenter and then
drops every capability with setpriv: in the capsule, uid 0 maps to the server's
uid, and a capability-holding process could remount the read-only binds.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

from . import _procfs
from ._base import (
    RUN_DIR_IN_CAPSULE,
    WRITABLE_DIRS,
    BootError,
    Launch,
    Sandbox,
    open_pty_from,
    read_until,
)

BOOT_TIMEOUT = 10.0
_NAMESPACES = ("user", "mnt", "uts", "ipc", "net", "pid")
# pid 1 of the capsule.  It prints "ready" only once bwrap has finished every
# mount (the --info-fd pid is written earlier, and an nsenter before that can see
# a half-built root), ignores the signals a pid-1 gets by default, and reaps the
# orphans it adopts: dash's `wait` collects any child, not only its own job.
INIT_SCRIPT = (
    "echo ready; exec </dev/null >/dev/null 2>&1; trap '' TERM INT HUP; "
    "while :; do sleep 3600 & wait; done"
)
# Host files masked inside the capsule even though /etc is visible.
_MASKED = ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-")


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BootError(f"{name} not found on PATH")
    return found


def bwrap_argv(
    bwrap: str,
    rw_dir: Path,
    hostname: str,
    info_fd: int,
    command: list[str],
    ro_binds: tuple[str, ...] = (),
) -> list[str]:
    argv = [
        bwrap,
        "--unshare-all",
        # Our init is pid 1 itself: code in the capsule cannot kill it (not even
        # `kill -9 -1`), which would otherwise tear the whole capsule down.
        "--as-pid-1",
        "--uid",
        "0",
        "--gid",
        "0",
        "--die-with-parent",
        "--hostname",
        hostname,
        "--ro-bind",
        "/usr",
        "/usr",
        "--ro-bind",
        "/etc",
        "/etc",
    ]
    if os.geteuid() == 0:
        # Real root keeps capabilities in the sandbox unless told otherwise.
        argv += ["--cap-drop", "ALL"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/") / name
        if host.is_symlink():
            argv += ["--symlink", os.readlink(host), f"/{name}"]
        elif host.is_dir():
            argv += ["--ro-bind", str(host), f"/{name}"]
    for masked in _MASKED:
        if os.path.lexists(masked):
            argv += ["--ro-bind", "/dev/null", masked]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    for name in WRITABLE_DIRS:
        argv += ["--bind", str(rw_dir / name), f"/{name}"]
    run_dir = rw_dir.parent / "run"
    if run_dir.is_dir():
        argv += ["--bind", str(run_dir), RUN_DIR_IN_CAPSULE]
    # After the writable binds, so that a path under /root or /tmp (a pyenv
    # interpreter, a venv in a temporary clone) is layered on top of them.
    for path in ro_binds:
        argv += ["--ro-bind", path, path]
    argv += ["--chdir", "/root", "--info-fd", str(info_fd), *command]
    return argv


class BwrapSandbox(Sandbox):
    kind = "bwrap"

    def __init__(
        self,
        capsule_id: str,
        capsule_dir: Path,
        freezer_cgroup: Path | None,
        ro_binds: tuple[str, ...] = (),
    ) -> None:
        super().__init__(capsule_id, capsule_dir, freezer_cgroup, ro_binds)
        self._bwrap: subprocess.Popen[bytes] | None = None
        self.init_pid = 0
        # Held for the capsule's lifetime, so a recycled pid can never redirect an
        # exec, a file operation or a kill to some other process.
        self._init_pidfd: int | None = None
        self._ns_fds: dict[str, int] = {}
        self._root_fd: int | None = None
        self._ns = ""
        self._join_userns = False
        self._nsenter = _tool("nsenter")
        self._setpriv = _tool("setpriv")

    async def boot(self) -> None:
        info_r, info_w = os.pipe()
        out_r, out_w = os.pipe()
        argv = bwrap_argv(
            _tool("bwrap"),
            self.rw_dir,
            "wrenn",
            info_w,
            ["/bin/sh", "-c", INIT_SCRIPT],
            self.ro_binds,
        )
        try:
            with open(self.dir / "boot.log", "ab") as log:
                self._bwrap = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out_w,
                    stderr=log,
                    pass_fds=(info_w,),
                    start_new_session=True,
                )
        finally:
            os.close(info_w)
            os.close(out_w)
        try:
            out = await read_until(out_r, b"ready\n", BOOT_TIMEOUT)
            if b"ready\n" not in out:
                raise BootError(f"sandbox init did not start: {self._boot_log_tail()}")
            os.set_blocking(info_r, False)
            raw = b""
            with contextlib.suppress(BlockingIOError):
                while chunk := os.read(info_r, 65536):
                    raw += chunk
            info = json.loads(raw)
            self.init_pid = int(info["child-pid"])
            self._hold(int(info["pid-namespace"]))
        except (asyncio.TimeoutError, ValueError, KeyError, OSError) as exc:
            await self.destroy()
            raise BootError(f"sandbox boot failed: {exc!r} {self._boot_log_tail()}") from exc
        except BaseException:
            await self.destroy()
            raise
        finally:
            os.close(out_r)
            os.close(info_r)
        self.freezer.adopt(self.init_pid)

    def _hold(self, pid_ns_inode: int) -> None:
        """Pin the init (pidfd), its namespaces and its root as fds."""
        self._init_pidfd = os.pidfd_open(self.init_pid)
        for ns in _NAMESPACES:
            self._ns_fds[ns] = os.open(f"/proc/{self.init_pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
        self._root_fd = os.open(
            f"/proc/{self.init_pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
        )
        self._ns = os.readlink(f"/proc/self/fd/{self._ns_fds['pid']}")
        # The pidfd was taken after the pid was read: make sure it is still our init.
        if self._ns != f"pid:[{pid_ns_inode}]":
            raise BootError(f"sandbox init {self.init_pid} vanished during boot")
        own_user = os.readlink("/proc/self/ns/user")
        self._join_userns = os.readlink(f"/proc/self/fd/{self._ns_fds['user']}") != own_user

    def _boot_log_tail(self) -> str:
        try:
            return (self.dir / "boot.log").read_bytes()[-500:].decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def launch(
        self, argv: list[str], env: dict[str, str], cwd: str, *, tty: bool, want_pid: bool
    ) -> Launch:
        assert self._root_fd is not None

        def fd_path(fd: int) -> str:
            return f"/proc/self/fd/{fd}"  # nsenter's own copy, inherited via pass_fds

        ns = self._ns_fds
        cmd = [self._nsenter]
        if self._join_userns:
            cmd += [f"--user={fd_path(ns['user'])}", "--preserve-credentials"]
        cmd += [
            f"--mount={fd_path(ns['mnt'])}",
            f"--uts={fd_path(ns['uts'])}",
            f"--ipc={fd_path(ns['ipc'])}",
            f"--net={fd_path(ns['net'])}",
            f"--pid={fd_path(ns['pid'])}",
            f"--root={fd_path(self._root_fd)}",
            f"--wdns={cwd}",
        ]
        cmd += [self._setpriv, "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
        # Every command leads its own process group (setsid keeps the pid: nsenter's
        # child is not a group leader), so a kill reaches the whole tree it started.
        lead = "/usr/bin/setsid -c" if tty else "/usr/bin/setsid"
        if want_pid:
            # nsenter's child may exit before we could find it in /proc, so the
            # process tells us its pid itself, then execs the command in place
            # (same pid).  With a tty, fd 1 is the terminal, opened read-write.
            redirect = "<&1" if tty else "</dev/null"
            script = f'echo "$$" >&0; exec {lead} -- "$@" {redirect}'
            cmd += ["/bin/sh", "-c", script, "sh"]
        else:
            cmd += [*lead.split(), "--"]
        return Launch(
            argv=cmd + argv,
            env=env,
            cwd=None,
            new_session=not tty,
            nested=True,
            reports_pid=want_pid,
            pass_fds=(*ns.values(), self._root_fd),
        )

    def visible_pid(self, host_pid: int) -> int:
        return _procfs.ns_pid(host_pid) or host_pid

    def open_root(self) -> int:
        if self._root_fd is None:
            raise OSError(errno.ENOENT, "sandbox is not running")
        return os.dup(self._root_fd)

    def member_pids(self) -> list[int]:
        return _procfs.ns_members(self._ns) if self._ns else []

    def open_pty(self) -> tuple[int, int]:
        try:
            return open_pty_from(self.open_root(), "dev/pts/ptmx")
        except OSError:
            # A host pty still works; `tty` inside then reports "not a tty".
            return os.openpty()

    @property
    def alive(self) -> bool:
        return self._bwrap is not None and self._bwrap.poll() is None

    def kill_now(self) -> None:
        if self._init_pidfd is not None:
            with contextlib.suppress(ProcessLookupError, OSError):
                signal.pidfd_send_signal(self._init_pidfd, signal.SIGKILL)

    async def destroy(self) -> None:
        # Killing bwrap itself would leave the namespace init running; SIGKILL of
        # the pid-namespace init takes every process of the capsule with it.
        self.kill_now()
        for pid in list(self.wrappers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        proc = self._bwrap
        if proc is not None:
            for _ in range(200):
                if proc.poll() is not None:
                    break
                await asyncio.sleep(0.01)
            else:
                proc.kill()
                proc.wait()
        if self.init_pid:
            # Reparented to us (subreaper) if bwrap died first.
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(self.init_pid, os.WNOHANG)
        for fd in [*self._ns_fds.values(), self._root_fd, self._init_pidfd]:
            if fd is not None:
                os.close(fd)
        self._ns_fds.clear()
        self._root_fd = self._init_pidfd = None
        self.freezer.remove()
