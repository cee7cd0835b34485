"""Capsules as persistent bubblewrap sandboxes entered with nsenter.

Layout ("host-ro"): the host's /usr, /etc and the merged-usr symlinks are bound
read-only; /root, /tmp, /home and /workspace are per-capsule host directories;
/proc, /dev (with its own devpts) are fresh; every namespace is unshared
(user and cgroup included, also as root), so the network is loopback-only.
Each exec first joins the capsule's cgroups (host-side shim), then its
namespaces with nsenter, then drops every capability with setpriv: in the
capsule, uid 0 maps to the server's uid, and a capability-holding process could
remount the read-only binds.  ``--disable-userns`` stops capsule code from
making nested user namespaces, which would give it those capabilities back
(and, with them, mounts of cgroupfs or procfs).

Host-side helpers run with ``HOST_ENV`` only.  A request's ``envs`` are applied
by ``env -i`` as the very last step inside the capsule, after the namespaces
are joined and the capabilities dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

from . import _fsconfig, _procfs
from ._base import (
    DEFAULT_PATH,
    HOST_ENV,
    RUN_DIR_IN_CAPSULE,
    WRITABLE_DIRS,
    ensure_run_dir,
    log,
    open_pty_from,
    read_until,
)
from ._cgroup import CapsuleCgroup, Limits
from ._contract import BootError, Capabilities, Launch, Probe
from ._host import HostSandbox
from ._ids import SERVER_IDS, Ids

BOOT_TIMEOUT = 10.0
_NS_GET_PARENT = 0xB702  # ioctl: the parent of a user namespace, as a new fd
_NAMESPACES = ("user", "mnt", "uts", "ipc", "net", "pid", "cgroup")
# pid 1 of the capsule.  It prints "ready" only once bwrap has finished every
# mount (the --info-fd pid is written earlier, and an nsenter before that can see
# a half-built root), ignores the signals a pid-1 gets by default, and reaps the
# orphans it adopts: dash's `wait` collects any child, not only its own job.
INIT_SCRIPT = (
    "echo ready; exec </dev/null >/dev/null 2>&1; trap '' TERM INT HUP; "
    "while :; do sleep 3600 & wait; done"
)
# Per-process open files of every capsule command, (soft, hard).  The command has
# no capability left to raise the hard limit; what all its processes together
# hold in kernel memory is charged to the capsule's memory limit.
NOFILE_LIMIT = (1024, 4096)
# Terminals one capsule may hold at once, its own openpty() calls and the API's
# PTY sessions together.  Its devpts instance is remounted with this ``max``, so
# a capsule that allocates terminals in a loop gets ENOSPC instead of draining
# the kernel's pool shared by every devpts instance on the host (kernel.pty.max).
PTY_MAX = 64
# bubblewrap's own options for the devpts of --dev: a remount resets the others.
_DEVPTS_OPTIONS = "ptmxmode=0666,mode=620"
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
    *,
    disable_userns: bool = True,
) -> list[str]:
    argv = [
        bwrap,
        "--unshare-all",
        # --unshare-all skips the user namespace when bwrap runs as root; without
        # one, --disable-userns is impossible and capsule root is host root.
        "--unshare-user",
        # Our init is pid 1 itself: code in the capsule cannot kill it (not even
        # `kill -9 -1`), which would otherwise tear the whole capsule down.
        "--as-pid-1",
        "--uid",
        "0",
        "--gid",
        "0",
        "--die-with-parent",
        # The init's environment is visible to capsule code (/proc/1/environ).
        "--clearenv",
        "--setenv",
        "PATH",
        DEFAULT_PATH,
        "--hostname",
        hostname,
        "--ro-bind",
        "/usr",
        "/usr",
        "--ro-bind",
        "/etc",
        "/etc",
    ]
    if disable_userns:
        # Fail closed: bwrap refuses to start rather than leave userns creation open.
        argv += ["--disable-userns", "--assert-userns-disabled"]
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
    # Last, once every mount point exists: the sandbox's own root is a tmpfs in
    # host RAM that no limit covers and no snapshot keeps, so nothing may write
    # it; only the writable binds above (and /dev, /proc) take writes.
    argv += ["--remount-ro", "/"]
    argv += ["--chdir", "/root", "--info-fd", str(info_fd), *command]
    return argv


def as_capsule_root(ids: Ids, argv: list[str]) -> list[str]:
    """``argv`` run as the capsule root's host uid: bubblewrap then makes an
    unprivileged user namespace that maps exactly that uid to 0 inside."""
    if not ids.mapped:
        return argv
    setpriv = _tool("setpriv")
    return [
        setpriv,
        f"--reuid={ids.uid}",
        f"--regid={ids.gid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--",
        *argv,
    ]


def _assignments(env: dict[str, str]) -> list[str]:
    """``K=V`` words for ``env``; names no environment can hold are dropped."""
    out = []
    for key, value in env.items():
        if key and "=" not in key and "\0" not in key and "\0" not in value:
            out.append(f"{key}={value}")
    return out


class BwrapSandbox(HostSandbox):
    kind = "bwrap"
    CAPABILITIES = Capabilities(
        isolated=True,
        host_filesystem=True,
        memory_snapshots=False,
        limits=False,
        precheck_exec=True,
    )
    pty_max = PTY_MAX

    @classmethod
    def probe(cls) -> Probe:
        # Here, not at the top: the probe builds its sandboxes with this module.
        from ._probe import probe_bwrap_backend

        return probe_bwrap_backend()

    def __init__(
        self,
        capsule_id: str,
        capsule_dir: Path,
        cgroup: CapsuleCgroup | None,
        ro_binds: tuple[str, ...] = (),
        limits: Limits | None = None,
        *,
        freeze_by_cgroup: bool = True,
        disable_userns: bool = True,
        ids: Ids = SERVER_IDS,
    ) -> None:
        super().__init__(
            capsule_id,
            capsule_dir,
            cgroup,
            ro_binds,
            limits,
            freeze_by_cgroup=freeze_by_cgroup,
            ids=ids,
        )
        self.disable_userns = disable_userns
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
        self._env = _tool("env")
        self._setsid = _tool("setsid")
        self._prlimit = _tool("prlimit")
        self._mount = _tool("mount")

    async def _boot(self, prepare: Callable[[], Awaitable[None]] | None) -> None:
        # With cgroups, the init's host-side shim is started first: it joins the
        # capsule's cgroups (see HELD_JOIN_SCRIPT) while ``prepare`` mounts the
        # disk, and runs bwrap once it is told the writable layer is ready.
        held = self.cgroup is not None
        if held:
            # Beside the disk, and bound by the argv below only if it exists.
            await asyncio.to_thread(ensure_run_dir, self.dir, self.ids.owner)
        else:
            await self._ready_layer(prepare)
        info_r, info_w = os.pipe()
        out_r, out_w = os.pipe()
        go_r, go_w = os.pipe() if held else (subprocess.DEVNULL, -1)
        argv = bwrap_argv(
            _tool("bwrap"),
            self.rw_dir,
            "wrenn",
            info_w,
            ["/bin/sh", "-c", INIT_SCRIPT],
            self.ro_binds,
            disable_userns=self.disable_userns,
        )
        try:
            # Before bwrap runs: it creates the cgroup namespace from its own
            # cgroup, which must already be the capsule's.
            self.make_cgroup()
            fd = os.open(self.dir / "boot.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with open(fd, "ab") as log:
                self._bwrap = subprocess.Popen(
                    self.in_cgroup(as_capsule_root(self.ids, argv), held=held),
                    env=HOST_ENV,
                    cwd="/",
                    stdin=go_r,
                    stdout=out_w,
                    stderr=log,
                    pass_fds=(info_w,),
                    start_new_session=True,
                )
        except BaseException:
            for end in (info_r, out_r, go_w):
                if end >= 0:
                    os.close(end)
            self.remove_cgroup()
            raise
        finally:
            for end in (info_w, out_w, go_r):
                if end >= 0:
                    os.close(end)
        try:
            if held:
                await self._release_held_shim(prepare, go_w)
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
            await self._limit_ptys()
        except (asyncio.TimeoutError, ValueError, KeyError, OSError) as exc:
            await self.destroy()
            raise BootError(f"sandbox boot failed: {exc!r} {self._boot_log_tail()}") from exc
        except BaseException:
            await self.destroy()
            raise
        finally:
            os.close(out_r)
            os.close(info_r)

    async def _release_held_shim(
        self, prepare: Callable[[], Awaitable[None]] | None, go_w: int
    ) -> None:
        """Ready the writable layer, then let the shim run bwrap.  On any failure the
        pipe closes unwritten, and the shim exits without running it."""
        try:
            try:
                await self._ready_layer(prepare)
            except OSError as exc:
                raise BootError(f"capsule layer: {exc}") from exc
            # A shim that already failed (its boot.log says why) left no reader.
            with contextlib.suppress(BrokenPipeError):
                os.write(go_w, b"go\n")
        finally:
            os.close(go_w)

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
        self._use_sandbox_userns(own_user)
        self._join_userns = os.readlink(f"/proc/self/fd/{self._ns_fds['user']}") != own_user

    async def _limit_ptys(self) -> None:
        """Remount the capsule's devpts with ``max=PTY_MAX`` before any command runs.

        As root this runs without joining the sandbox's user namespace (host root
        may remount any mount), in-process where the kernel offers fspick (see
        ``_fsconfig``), and a failure fails the boot: a capsule without the bound
        is not started.  Unprivileged, the server is root only inside
        that namespace, which owns the devpts; if the kernel still refuses, the
        capsule runs without the bound and the log says so.
        """
        assert self._root_fd is not None
        as_root = os.geteuid() == 0
        if as_root:
            options = dict(o.split("=", 1) for o in _DEVPTS_OPTIONS.split(","))
            try:
                _fsconfig.reconfigure(self._root_fd, "dev/pts", {**options, "max": str(PTY_MAX)})
                return
            except _fsconfig.Unavailable:
                pass  # the classic remount below
            except OSError as exc:
                raise BootError(f"could not bound the capsule's terminals: {exc}") from exc
        ns = self._ns_fds
        cmd = [self._nsenter]
        if self._join_userns and not as_root:
            cmd += [f"--user=/proc/self/fd/{ns['user']}", "--preserve-credentials"]
        cmd += [
            f"--mount=/proc/self/fd/{ns['mnt']}",
            f"--root=/proc/self/fd/{self._root_fd}",
            "--",
            self._mount,
            "-o",
            f"remount,{_DEVPTS_OPTIONS},max={PTY_MAX}",
            "/dev/pts",
        ]
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            env=HOST_ENV,
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(ns["mnt"], ns["user"], self._root_fd),
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), BOOT_TIMEOUT)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        if proc.returncode == 0:
            return
        reason = err.decode("utf-8", "replace").strip()[:300]
        if as_root:
            raise BootError(f"could not bound the capsule's terminals: {reason}")
        log.warning("capsule %s runs without a terminal limit: %s", self.capsule_id, reason)

    def _use_sandbox_userns(self, own_user: str) -> None:
        """Join the sandbox's user namespace, not the one nested in it.

        With --disable-userns bwrap's init runs in a second user namespace nested
        in the sandbox's, which has its user-namespace limit used up.  The other
        namespaces belong to the outer one: joining the inner one first would
        leave nsenter unable to enter them when the server is not root.  A
        process of the outer one cannot create user namespaces either (the
        inner one already uses its whole allowance).
        """
        if not self.disable_userns:
            return
        try:
            parent = fcntl.ioctl(self._ns_fds["user"], _NS_GET_PARENT)
        except OSError:
            return  # not nested: keep the init's own
        if os.readlink(f"/proc/self/fd/{parent}") == own_user:
            os.close(parent)
            return
        os.set_inheritable(parent, False)
        os.close(self._ns_fds["user"])
        self._ns_fds["user"] = parent

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
            cmd.append(f"--user={fd_path(ns['user'])}")
            # Mapped: become the namespace's uid 0 (the capsule's own host uid);
            # otherwise the server's uid already is the sandbox's root.
            if not self.ids.mapped:
                cmd.append("--preserve-credentials")
        cmd += [
            f"--mount={fd_path(ns['mnt'])}",
            f"--uts={fd_path(ns['uts'])}",
            f"--ipc={fd_path(ns['ipc'])}",
            f"--net={fd_path(ns['net'])}",
            f"--pid={fd_path(ns['pid'])}",
            f"--cgroup={fd_path(ns['cgroup'])}",
            f"--root={fd_path(self._root_fd)}",
            f"--wdns={cwd}",
        ]
        cmd += [self._setpriv, "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
        # After the capabilities are gone (lowering a limit needs none).  No core
        # files: the kernel's core_pattern may hand them to a host-side helper.
        soft, hard = NOFILE_LIMIT
        cmd += [self._prlimit, f"--nofile={soft}:{hard}", "--core=0", "--"]
        # The command's own environment, applied last, inside the capsule, with
        # no capability left: `env -i -- K=V ...` (after `--` no key is an option).
        final = [self._env, "-i", "--", *_assignments(env)]
        # Every command leads its own process group (setsid keeps the pid: nsenter's
        # child is not a group leader), so a kill reaches the whole tree it started.
        # setsid comes after env so that a command name containing "=" is never
        # taken for an assignment.
        final += [self._setsid, "-c", "--"] if tty else [self._setsid, "--"]
        if want_pid:
            # nsenter's child may exit before we could find it in /proc, so the
            # process tells us its pid itself, then execs the command in place
            # (same pid).  With a tty, fd 1 is the terminal, opened read-write.
            redirect = "<&1" if tty else "</dev/null"
            script = f'echo "$$" >&0; exec "$@" {redirect}'
            cmd += ["/bin/sh", "-c", script, "sh"]
        return Launch(
            argv=self.in_cgroup(cmd + final + argv),
            env=dict(HOST_ENV),
            # Not the server's cwd (the shim would export it as PWD); nsenter
            # sets the capsule cwd itself (--wdns).
            cwd="/",
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
        if self.cgroup is not None:
            # Also processes in nested pid namespaces, which the ns scan misses.
            return [p for p in self.cgroup.pids() if p not in self.wrappers]
        return _procfs.ns_members(self._ns) if self._ns else []

    def open_pty(self) -> tuple[int, int]:
        try:
            return open_pty_from(self.open_root(), "dev/pts/ptmx")
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise  # the capsule's PTY_MAX is used up; a host pty would dodge it
            # A host pty still works; `tty` inside then reports "not a tty".
            return os.openpty()

    @property
    def alive(self) -> bool:
        return self._bwrap is not None and self._bwrap.poll() is None

    def _kill_init(self) -> None:
        if self._init_pidfd is not None:
            with contextlib.suppress(ProcessLookupError, OSError):
                signal.pidfd_send_signal(self._init_pidfd, signal.SIGKILL)

    def kill_now(self) -> None:
        """Last resort at shutdown: the init, and everything in the capsule's cgroups."""
        self._kill_init()
        if self.cgroup is not None:
            self.cgroup.kill()

    def reap_orphans(self) -> int:
        """Reap capsule processes re-parented to the server.

        A command nsenter started lives in the capsule's pid namespace but is the
        child of its host-side wrapper.  If the wrapper dies first, the kernel
        re-parents that child to the server (the subreaper), not to the capsule's
        init; until the server reaps it, the dying pid namespace cannot finish
        (its init waits in zap_pid_ns_processes) and the capsule never goes away.
        """
        if not self._ns:
            return 0
        me = os.getpid()
        reaped = 0
        for pid in _procfs.ns_members(self._ns):
            if _procfs.ppid_of(pid) == me and _procfs.state_of(pid) == "Z":
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, os.WNOHANG)
                    reaped += 1
        return reaped

    async def destroy(self) -> None:
        # Killing bwrap itself would leave the namespace init running; SIGKILL of
        # the pid-namespace init takes every process of the capsule with it.  The
        # init alone, first: each host-side wrapper then sees its child die and
        # exits by itself (killing the wrappers too would orphan their children,
        # see reap_orphans).  What is left is killed through the cgroup below.
        self._kill_init()
        for pid in list(self.wrappers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        proc = self._bwrap
        if proc is not None:
            for _ in range(200):
                if proc.poll() is not None:
                    break
                self.reap_orphans()
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
        await self.release_cgroup()
