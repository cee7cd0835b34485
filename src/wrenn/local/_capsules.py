"""Capsules: boot and teardown, exec, processes, files, templates, TTL and metrics.

The asynchronous lifecycle (create, pause, resume, destroy, snapshot) is
:mod:`._lifecycle`; it calls back into :class:`Manager` for the sandboxes and
the files.  Everything here runs on the server's event loop; blocking
filesystem work is pushed to worker threads, but processes are always spawned
from the loop thread (bubblewrap's --die-with-parent fires when the spawning
*thread* exits).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import logging
import os
import signal
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import _fdtree, _kernels, _wire
from ._events import SYSTEM_ACTOR, EventBus
from ._files import CapsuleFiles, FsError
from ._fs import CapsuleFS
from ._lifecycle import LISTED, Lifecycle, settled_after_restart
from ._live import Live, Tracked
from ._metrics import METRIC_RANGES, Metrics
from ._proc import OutputBuffer
from ._pty import PtySession
from ._runtime import Backend, BootError, CapsuleProcess, Unsupported, _procfs
from ._runtime._cgroup import Limits
from ._runtime._disk import DEFAULT_DISK_SIZE_MB, Disks
from ._runtime._ids import SERVER_IDS, Ids, allow_search, capsule_uid, unreachable
from ._shapes import capsule_json, template_json
from ._store import CapsuleRow, ProcessRow, Store, TemplateRow
from ._validate import env_map, field, integer, str_list
from ._validate import selector as parse_selector
from ._wire import ApiError, agent_error, bad_request, invalid_state, not_found, unsupported

log = logging.getLogger("wrenn.local")

PLATFORM_TEMPLATES = ("minimal", "minimal-ubuntu", _kernels.TEMPLATE)
DEFAULT_EXEC_TIMEOUT = 30
MAX_EXEC_TIMEOUT = 2**31 - 1  # seconds; larger values would overflow the event loop timer
TERM_GRACE = 2.0


def _rmtree(path: Path) -> None:
    try:
        _fdtree.remove_tree(path)
    except OSError as exc:
        log.warning("could not remove %s: %s", path, exc)


class Manager:
    def __init__(
        self,
        state_dir: Path,
        backend: Backend,
        *,
        metrics_interval: float = 5.0,
        ttl_interval: float = 2.0,
        min_timeout_sec: int = 60,
        transition_delay: float = 0.0,
        disk_size_mb: int = DEFAULT_DISK_SIZE_MB,
    ) -> None:
        self.state_dir = state_dir
        self.min_timeout_sec = min_timeout_sec
        self.backend = backend
        self.ttl_interval = ttl_interval
        (state_dir / "capsules").mkdir(parents=True, exist_ok=True)
        (state_dir / "templates").mkdir(parents=True, exist_ok=True)
        # Templates are the server's alone; capsule dirs are reached by their own uids.
        os.chmod(state_dir / "templates", 0o700)
        if backend.maps_root:
            for directory in (state_dir, state_dir / "capsules"):
                allow_search(directory)
            os.chmod(state_dir / "capsules", 0o711)
        self._ids: dict[str, Ids] = {}
        self.store = Store(state_dir / "wrenn-local.db")
        # Each capsule's writable dirs on a filesystem of its own size (root only).
        self.disks = Disks(state_dir, disk_size_mb)
        self.events = EventBus(self.store)
        self.live: dict[str, Live] = {}
        self.metrics = Metrics(self.store, self.live, metrics_interval)
        self._locks: dict[str, asyncio.Lock] = {}
        # Booting from a template, overwriting it and deleting it never overlap.
        self._template_locks: dict[str, asyncio.Lock] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.lifecycle = Lifecycle(self, transition_delay)

    # start / stop -------------------------------------------------------------
    async def start(self) -> None:
        now = time.time()
        for name in PLATFORM_TEMPLATES:
            if self.store.get_template(name) is None:
                self.store.upsert_template(TemplateRow(name, "base", 0, 0, 0, now, True))
        self.store.clear_processes()
        await asyncio.to_thread(self._remove_snapshot_staging)
        # Before any boot: disks of a server that was killed (this one's included).
        await asyncio.to_thread(self.disks.sweep_stale)
        for c in self.store.list_capsules(LISTED):
            settled = settled_after_restart(c.status)
            if settled is not None:
                # A transition the previous server did not finish (it was killed).
                self.lifecycle.change_status(
                    c.id, settled, actor=SYSTEM_ACTOR, reason="server_restart"
                )
                if settled == "stopped":
                    await self.remove_capsule_files(c.id)
                continue
            if c.status != "running":
                continue
            # Processes do not survive a server restart: the capsule comes back cold.
            try:
                await self.boot(c.id)
                self.store.update_capsule(c.id, started_at=time.time(), last_active_at=time.time())
            except BootError as exc:
                log.error("could not restart capsule %s: %s", c.id, exc)
                self.lifecycle.change_status(
                    c.id, "error", actor=SYSTEM_ACTOR, reason="server_restart"
                )
        self._tasks.append(asyncio.create_task(self._housekeeping_loop()))
        self._tasks.append(asyncio.create_task(self.metrics.run()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Before the teardown below: a transition must not boot a sandbox after it.
        await self.lifecycle.shutdown()
        self.events.close()
        for capsule_id in list(self.live):
            await self._keep_memory(capsule_id)
            await self.teardown(capsule_id)
        await asyncio.to_thread(self._detach_disks)
        self.backend.cleanup()
        self.store.close()

    async def _keep_memory(self, capsule_id: str) -> None:
        """At a server's stop, a running capsule whose pause is a memory snapshot is
        frozen first: its next boot, in the next server, restores it, processes and
        all, instead of booting cold.  Its status stays ``running``."""
        sandbox = self.live[capsule_id].sandbox
        if not sandbox.capabilities.memory_snapshots or sandbox.is_frozen or not sandbox.alive:
            return
        try:
            await sandbox.freeze()
        except Exception as exc:  # it is destroyed all the same, and boots cold next time
            log.warning("capsule %s: memory not kept at stop: %s", capsule_id, exc)

    def _detach_disks(self) -> None:
        for capsule_dir in (self.state_dir / "capsules").iterdir():
            try:
                self.disks.detach(capsule_dir)
            except OSError as exc:
                log.warning("could not detach the disk of %s: %s", capsule_dir.name, exc)
        self.disks.close()

    def emergency_kill(self) -> None:
        """Synchronous sweep for a loop that died: SIGKILL every known capsule process."""
        for live in self.live.values():
            live.sandbox.kill_now()

    def lock(self, capsule_id: str) -> asyncio.Lock:
        """The lock that serializes every transition of one capsule."""
        return self._locks.setdefault(capsule_id, asyncio.Lock())

    def forget_lock(self, capsule_id: str) -> None:
        self._locks.pop(capsule_id, None)

    def _template_lock(self, name: str) -> asyncio.Lock:
        return self._template_locks.setdefault(name, asyncio.Lock())

    def _capsule_dir(self, capsule_id: str) -> Path:
        return self.state_dir / "capsules" / capsule_id

    def ids_for(self, capsule_id: str, ro_binds: tuple[str, ...] = ()) -> Ids:
        """Which host uid this capsule's root is (see ``_runtime._ids``); decided once."""
        known = self._ids.get(capsule_id)
        if known is not None:
            return known
        ids = SERVER_IDS
        capsule_dir = self._capsule_dir(capsule_id)
        if self.backend.maps_root:
            capsule_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(capsule_dir, 0o711)  # its uid passes through, nobody lists it
            try:
                legacy = (capsule_dir / "rw" / "root").stat().st_uid == SERVER_IDS.uid
            except FileNotFoundError:
                legacy = False
            blocked = unreachable([capsule_dir, *map(Path, ro_binds)])
            if legacy:
                log.info("capsule %s predates per-capsule uids: its root is host root", capsule_id)
            elif blocked is not None:
                log.warning(
                    "capsule %s: its root is host root, because %s is not searchable "
                    "by other uids (bubblewrap resolves its binds as the capsule's uid)",
                    capsule_id,
                    blocked,
                )
            else:
                uid = capsule_uid(capsule_id)
                ids = Ids(uid, uid, True)
        self._ids[capsule_id] = ids
        return ids

    def _binds_for(self, capsule_id: str) -> tuple[str, ...]:
        row = self.store.get_capsule(capsule_id)
        # A code-runner capsule sees the server's interpreter, which runs its kernels.
        if row is not None and row.template == _kernels.TEMPLATE:
            return _kernels.interpreter_binds()
        return ()

    def _remove_snapshot_staging(self) -> None:
        """Half-written snapshots (``templates/.<name>.<hex>``) of a server that died."""
        for entry in (self.state_dir / "templates").glob(".*"):
            _rmtree(entry)

    async def boot(self, capsule_id: str) -> Live:
        row = self.store.get_capsule(capsule_id)
        binds = self._binds_for(capsule_id)
        # The capsule's cgroup enforces its own request's vcpus and memory_mb.
        limits = (
            Limits(vcpus=row.vcpus, memory_mb=row.memory_mb, disk_mb=self.disks.size_mb)
            if row is not None
            else None
        )
        capsule_dir = self._capsule_dir(capsule_id)
        if self.disks.has_image(capsule_dir):
            # Its root's uid is read from its files (ids_for): mounted first.
            await asyncio.to_thread(self.disks.attach, capsule_dir)
        ids = await asyncio.to_thread(self.ids_for, capsule_id, binds)
        sandbox = self.backend.sandbox(capsule_id, capsule_dir, binds, limits, ids)
        # A new capsule's disk is made and mounted while the sandbox starts
        # (Sandbox.boot); a mounted one is left as it is.
        await sandbox.boot(lambda: asyncio.to_thread(self.disks.attach, capsule_dir))
        fs: CapsuleFiles
        if sandbox.capabilities.host_filesystem:
            fs = CapsuleFS(sandbox.open_root, ids=ids)
        else:
            fs = sandbox.guest_files()
        live = Live(sandbox, fs)
        self.live[capsule_id] = live
        return live

    async def teardown(self, capsule_id: str) -> None:
        live = self.live.pop(capsule_id, None)
        if live is None:
            return
        # A frozen host capsule is thawed so that the kill lands; a frozen capsule
        # whose pause is a memory snapshot keeps it, for its next boot.
        if live.sandbox.is_frozen and not live.sandbox.capabilities.memory_snapshots:
            with contextlib.suppress(OSError):
                await live.sandbox.thaw()
        await live.sandbox.destroy()
        for kernel in live.kernels.values():
            kernel.close_fds()
        live.kernels.clear()
        for session in list(live.ptys.values()):
            await session.close()
        for tracked in list(live.procs.values()):
            await tracked.proc.send_signal(signal.SIGKILL)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(tracked.proc.wait(), 5)
        self.store.clear_processes(capsule_id)

    # lookups ------------------------------------------------------------------
    @staticmethod
    def check_id(capsule_id: str) -> None:
        if not _wire.CAPSULE_ID_RE.match(capsule_id):
            raise bad_request("invalid sandbox ID")

    def get_row(self, capsule_id: str, missing: str = "sandbox not found") -> CapsuleRow:
        self.check_id(capsule_id)
        row = self.store.get_capsule(capsule_id)
        if row is None:
            raise not_found(missing)
        return row

    def require_running(
        self, capsule_id: str, *, with_status: bool = True
    ) -> tuple[CapsuleRow, Live]:
        row = self.get_row(capsule_id)
        live = self.live.get(capsule_id)
        if row.status != "running" or live is None:
            msg = "sandbox is not running"
            raise invalid_state(f"{msg} (status: {row.status})" if with_status else msg)
        return row, live

    def touch(self, capsule_id: str) -> None:
        self.store.update_capsule(capsule_id, last_active_at=time.time())

    # capsules -----------------------------------------------------------------
    def list_capsules(self) -> list[dict[str, Any]]:
        return [self.capsule_json(c) for c in self.store.list_capsules(LISTED)]

    def capsule_json(self, row: CapsuleRow, disk_used_mb: int | None = None) -> dict[str, Any]:
        """A capsule as the API answers it, with this server's disk size."""
        return capsule_json(row, disk_used_mb, self.disks.size_mb)

    async def get(self, capsule_id: str) -> dict[str, Any]:
        row = self.get_row(capsule_id)
        used = None
        capsule_dir = self._capsule_dir(capsule_id)
        if row.status in ("running", "paused"):
            used_bytes = self.disks.used_bytes(capsule_dir)
            if used_bytes is None:  # plain directories: a bounded walk, off the loop
                used_bytes = await asyncio.to_thread(self.backend.layer_bytes, capsule_dir)
            used = used_bytes // (1024 * 1024)
        return self.capsule_json(row, used)

    # capsule and template files (for the lifecycle) -------------------------------
    async def copy_template_files(self, name: str, capsule_id: str) -> None:
        """Seed a new capsule's writable dirs from snapshot template ``name``."""
        async with self._template_lock(name):
            if self.store.get_template(name) is None:
                raise FileNotFoundError(f"template {name!r} was deleted")
            await asyncio.to_thread(self.disks.attach, self._capsule_dir(capsule_id))
            ids = await asyncio.to_thread(self.ids_for, capsule_id, self._binds_for(capsule_id))
            await asyncio.to_thread(
                self.backend.load_layer,
                self.state_dir / "templates" / name,
                self._capsule_dir(capsule_id),
                ids.owner,
            )

    async def write_snapshot_files(self, capsule_id: str, name: str) -> int:
        """Copy the capsule's writable dirs into template ``name`` (replacing it); its size."""
        tdir = self.state_dir / "templates" / name
        # Copied aside first, so a failed copy never leaves a half template behind.
        staging = self.state_dir / "templates" / f".{name}.{_wire.hex8()}"
        try:
            # A template's files are the server's; each capsule booted from it gets
            # them as its own root's.
            await asyncio.to_thread(
                self.backend.save_layer,
                self._capsule_dir(capsule_id),
                staging,
                (SERVER_IDS.uid, SERVER_IDS.gid),
            )
            size = await asyncio.to_thread(_procfs.disk_usage, str(staging))
            async with self._template_lock(name):
                await asyncio.to_thread(_rmtree, tdir)
                staging.rename(tdir)
        except BaseException:
            await asyncio.to_thread(_rmtree, staging)
            raise
        return size

    async def remove_capsule_files(self, capsule_id: str) -> None:
        self._ids.pop(capsule_id, None)
        capsule_dir = self._capsule_dir(capsule_id)
        await asyncio.to_thread(self.disks.detach, capsule_dir)
        await asyncio.to_thread(_rmtree, capsule_dir)

    def ping(self, capsule_id: str) -> None:
        row = self.get_row(capsule_id, "resource not found")
        if row.status != "running":
            raise invalid_state("resource is not running")
        self.touch(capsule_id)

    # exec ---------------------------------------------------------------------
    def _env_cwd(self, live: Live, envs: dict[str, str], cwd: str) -> tuple[dict[str, str], str]:
        env = {**live.sandbox.home_env(), **envs}
        if not cwd:
            cwd = "/root"
        elif not cwd.startswith("/"):
            cwd = f"/root/{cwd}"
        return env, cwd

    def _track(
        self,
        capsule_id: str,
        live: Live,
        proc: CapsuleProcess,
        pid: int,
        tag: str | None,
        cmd: str,
        args: list[str],
    ) -> Tracked:
        tracked = Tracked(proc, pid, tag, cmd, args)
        live.procs[pid] = tracked
        self.store.add_process(ProcessRow(capsule_id, pid, tag, cmd, args))

        def on_event(kind: str, _data: bytes) -> None:
            if kind == "exit" and live.procs.get(pid) is tracked:
                del live.procs[pid]
                self.store.remove_process(capsule_id, pid)

        proc.listen(on_event)
        return tracked

    @staticmethod
    def _precheck(live: Live, argv0: str, env: dict[str, str], cwd: str) -> None:
        """Fail like a failed process start (502) instead of letting nsenter/setpriv
        report a missing cwd or command as an ordinary exit status."""
        if not live.sandbox.capabilities.precheck_exec:
            return  # the launch itself raises for these
        fs = live.fs
        if not isinstance(fs, CapsuleFS):
            # Only host backends need the precheck, and only they have host files.
            raise TypeError(
                f"the {live.sandbox.kind} backend claims precheck_exec without a host filesystem"
            )

        def kind(path: str) -> int | None:
            try:
                with fs.resolve(path) as r:
                    return r.st.st_mode if r.st is not None else None
            except FsError:
                return None

        mode = kind(cwd)
        if mode is None or not stat.S_ISDIR(mode):
            raise agent_error(f"start process: chdir {cwd}: no such file or directory")
        if "/" in argv0:
            candidates = [argv0 if argv0.startswith("/") else f"{cwd}/{argv0}"]
        else:
            candidates = [f"{d or '.'}/{argv0}" for d in env.get("PATH", "").split(":")]
        for candidate in candidates:
            mode = kind(candidate)
            if mode is not None and stat.S_ISREG(mode):
                return
        raise agent_error(f'start process: exec: "{argv0}": executable file not found in $PATH')

    def _spawn(
        self, live: Live, argv: list[str], env: dict[str, str], cwd: str, *, want_pid: bool = True
    ) -> CapsuleProcess:
        self._precheck(live, argv[0], env, cwd)
        try:
            return live.sandbox.start_process(argv, env, cwd, want_pid=want_pid)
        except Unsupported as exc:
            raise unsupported(f"start process: {exc}") from None
        except OSError as exc:
            raise agent_error(f"start process: {exc}") from None

    async def exec(self, capsule_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        cmd = field(body, "cmd", str, "")
        args = str_list(body, "args")
        timeout_sec = integer(body, "timeout_sec", 0, 0, MAX_EXEC_TIMEOUT)
        background = field(body, "background", bool, False)
        tag = field(body, "tag", str, "")
        envs = env_map(body)
        cwd = field(body, "cwd", str, "")
        if not cmd:
            raise bad_request("cmd is required")
        _, live = self.require_running(capsule_id)
        self.touch(capsule_id)
        env, cwd = self._env_cwd(live, envs, cwd)
        # A foreground exec never reports its pid, so it skips the pid-reporting shim.
        proc = self._spawn(live, [cmd, *args], env, cwd, want_pid=background)
        if background:
            pid = await proc.resolve()
            tag = tag or f"proc-{_wire.hex8()}"
            self._track(capsule_id, live, proc, pid, tag, cmd, args)
            return 202, {"sandbox_id": capsule_id, "cmd": cmd, "pid": pid, "tag": tag}
        # Bounded in memory: past MAX_EXEC_OUTPUT the command is killed (502 below).
        output = OutputBuffer(proc)
        out, err = output.stdout, output.stderr
        started = time.monotonic()
        timeout = timeout_sec if timeout_sec > 0 else DEFAULT_EXEC_TIMEOUT
        try:
            code = await asyncio.wait_for(proc.wait(), timeout)
        except asyncio.TimeoutError:
            await proc.terminate(TERM_GRACE)
            raise agent_error(f"exec: command timed out after {timeout}s") from None
        except asyncio.CancelledError:
            # The client went away: do not leave the command running.
            await proc.terminate(TERM_GRACE)
            raise
        if output.overflowed:
            raise agent_error(output.message)
        duration_ms = int((time.monotonic() - started) * 1000)
        try:
            stdout, stderr, encoding = out.decode("utf-8"), err.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            stdout = base64.b64encode(out).decode()
            stderr = base64.b64encode(err).decode()
            encoding = "base64"
        return 200, {
            "sandbox_id": capsule_id,
            "cmd": cmd,
            "stdout": stdout,
            "stderr": stderr,
            "exit_code": code,
            "duration_ms": duration_ms,
            "encoding": encoding,
        }

    async def start_stream(
        self,
        capsule_id: str,
        live: Live,
        cmd: str,
        args: list[str],
        envs: dict[str, str],
        cwd: str,
        listener: Callable[[str, bytes], None],
    ) -> tuple[Tracked, Callable[[], None]]:
        """Start a process with ``listener`` attached before any output can arrive."""
        self.touch(capsule_id)
        env, cwd = self._env_cwd(live, envs, cwd)
        proc = self._spawn(live, [cmd, *args], env, cwd)
        remove = proc.listen(listener)
        pid = await proc.resolve()
        return self._track(capsule_id, live, proc, pid, None, cmd, args), remove

    def processes(self, capsule_id: str) -> dict[str, Any]:
        _, live = self.require_running(capsule_id)
        self.touch(capsule_id)
        items = [
            _wire.omit_none(
                {"pid": t.pid, "tag": t.tag or None, "cmd": t.cmd, "args": t.args or None}
            )
            for t in sorted(live.procs.values(), key=lambda t: t.pid)
        ]
        return {"processes": items}

    def find_process(self, live: Live, selector: str) -> Tracked | None:
        key = parse_selector(selector)
        if isinstance(key, int):
            return live.procs.get(key)
        for tracked in live.procs.values():
            if tracked.tag == selector:
                return tracked
        return None

    async def kill(self, capsule_id: str, selector: str, signal_name: str | None) -> None:
        _, live = self.require_running(capsule_id)
        self.touch(capsule_id)
        tracked = self.find_process(live, selector)
        if tracked is None:
            raise not_found(f"process not found: {selector}")
        # Like the real control plane, anything but SIGTERM means SIGKILL.
        sig = signal.SIGTERM if signal_name == "SIGTERM" else signal.SIGKILL
        await tracked.proc.send_signal(sig)

    # pty ----------------------------------------------------------------------
    async def pty_start(
        self,
        capsule_id: str,
        live: Live,
        argv: list[str],
        envs: dict[str, str],
        cwd: str,
        cols: int,
        rows: int,
        listener: Callable[[str, bytes], None],
    ) -> tuple[PtySession, int, Callable[[], None]]:
        self.touch(capsule_id)
        env, cwd = self._env_cwd(live, {"TERM": "xterm-256color", **envs}, cwd)
        tag = f"pty-{_wire.hex8()}"
        self._precheck(live, argv[0], env, cwd)
        try:
            session = PtySession(live.sandbox, tag, argv, env, cwd, cols, rows)
        except Unsupported as exc:
            raise unsupported(f"start pty: {exc}") from None
        except OSError as exc:
            limit = live.sandbox.pty_max
            if exc.errno == errno.ENOSPC and limit is not None:
                raise agent_error(
                    "start pty: every terminal this capsule may hold is in use "
                    f"(at most {limit}); close one first"
                ) from None
            raise agent_error(f"start pty: {exc}") from None
        remove = session.listen(listener)  # before any await: keep the first prompt
        pid = await session.proc.resolve()
        live.ptys[tag] = session
        self._track(capsule_id, live, session.proc, pid, tag, argv[0], argv[1:])

        def on_event(kind: str, _data: bytes) -> None:
            if kind == "exit":
                live.ptys.pop(tag, None)

        session.listen(on_event)
        return session, pid, remove

    # files --------------------------------------------------------------------
    def files(self, capsule_id: str) -> CapsuleFiles:
        _, live = self.require_running(capsule_id, with_status=False)
        return live.fs

    # templates ----------------------------------------------------------------
    def templates(self, type_: str | None) -> list[dict[str, Any]]:
        return [template_json(t) for t in self.store.list_templates(type_)]

    async def delete_template(self, name: str) -> None:
        if not _wire.SAFE_NAME_RE.match(name):
            raise bad_request("invalid template name")
        tpl = self.store.get_template(name)
        if tpl is None:
            raise not_found("template not found")
        if tpl.platform or name == "minimal":
            raise ApiError(403, "forbidden", "platform templates cannot be deleted")
        async with self._template_lock(name):
            await asyncio.to_thread(_rmtree, self.state_dir / "templates" / name)
            self.store.delete_template(name)
        self.events.publish("template.snapshot.delete", name, "template", outcome="success")

    # TTL ----------------------------------------------------------------------
    async def _housekeeping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_interval)
            try:
                await self.reconcile()
                await self.ttl_tick()
            except Exception:
                log.exception("housekeeping failed")

    async def reconcile(self) -> None:
        """A sandbox that died under us (killed from the host, OOM) ends its capsule,
        like the platform's reconciler marks an orphaned VM ``stopped``."""
        for capsule_id, live in list(self.live.items()):
            if live.sandbox.alive:
                continue
            async with self.lock(capsule_id):
                row = self.store.get_capsule(capsule_id)
                if self.live.get(capsule_id) is not live or row is None:
                    continue
                log.warning("capsule %s: its sandbox exited unexpectedly", capsule_id)
                await self.teardown(capsule_id)
                # A transition waiting for the lock then sees the change and gives up;
                # a destroy under way finishes by itself.
                if row.status not in ("stopped", "stopping"):
                    self.lifecycle.change_status(
                        capsule_id, "stopped", actor=SYSTEM_ACTOR, reason="orphaned"
                    )

    async def ttl_tick(self) -> None:
        now = time.time()
        for c in self.store.list_capsules(("running",)):
            if c.timeout_sec > 0 and now - (c.last_active_at or c.created_at) >= c.timeout_sec:
                with contextlib.suppress(ApiError):
                    self.lifecycle.pause(c.id, SYSTEM_ACTOR, "ttl_expired")

    # metrics ------------------------------------------------------------------
    async def capsule_metrics(self, capsule_id: str, range_: str | None) -> dict[str, Any]:
        row = self.get_row(capsule_id)
        if range_ is not None and range_ not in METRIC_RANGES:
            raise bad_request("invalid range: must be one of 5m, 10m, 1h, 2h, 6h, 12h, 24h")
        if row.status not in ("running", "paused"):
            raise not_found(f"metrics not available for sandbox in state: {row.status}")
        return await self.metrics.points(capsule_id, range_, row.status == "running")


__all__ = ["Manager"]
