"""Jupyter kernels inside capsules, for the code runner (extra ``wrenn[local-code-runner]``).

Each kernel is ipykernel, started *inside* the capsule like any command, with its
zmq sockets on IPC paths in the capsule's server-owned run directory. The server
reaches those sockets from the host through ``/proc/self/fd/N`` after checking
that each one really is a socket: a capsule can put a symlink where a socket
should be, and following it would hand the server's connection to whatever the
link names on the host.

The interpreter is the server's own (its installation and venv are bound
read-only into code-runner capsules at the same paths), so the kernel has exactly
the packages the server's environment has.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import secrets
import signal
import stat
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._runtime import CapsuleProcess, Sandbox

log = logging.getLogger("wrenn.local")

TEMPLATE = "code-runner-beta"
KERNEL_NAME = "wrenn"
PORT = 8888
REQUIRED = ("ipykernel", "jupyter_client")
STARTUP_TIMEOUT = 30.0
SHUTDOWN_GRACE = 2.0
# zmq channel -> the number used as its IPC "port" (the path suffix).
CHANNELS = {"shell": 1, "iopub": 2, "stdin": 3, "control": 4, "hb": 5}
# How often a new connection asks the kernel for a status while its iopub subscribes.
SUBSCRIBE_NUDGE = 0.2
SUBSCRIBE_TIMEOUT = 5.0
_STDERR_KEPT = 4096


def missing_packages() -> list[str]:
    """The kernel packages this environment lacks (empty when the code runner works)."""
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def install_hint() -> str:
    return (
        f"the {TEMPLATE!r} template needs the kernel packages "
        f"({', '.join(missing_packages())} missing): pip install 'wrenn[local-code-runner]'"
    )


def interpreter_binds() -> tuple[str, ...]:
    """Host directories the kernel's interpreter needs inside the capsule.

    The installation (``sys.base_prefix``, whose libpython the binary finds by an
    absolute path) and the venv (``sys.prefix``), outermost first and without
    what every capsule already sees read-only (``/usr``).
    """
    found: list[str] = []
    for raw in (sys.base_prefix, sys.prefix):
        path = os.path.realpath(raw)
        if path == "/usr" or path.startswith("/usr/"):
            continue
        if any(path == p or path.startswith(p + "/") for p in found):
            continue
        found = [p for p in found if not p.startswith(path + "/")] + [path]
    return tuple(found)


@dataclass
class Kernel:
    """One running ipykernel and what the server needs to reach and describe it."""

    id: str
    name: str
    proc: CapsuleProcess
    key: bytes
    # O_PATH fds of the kernel's sockets, checked to be sockets when opened.
    socket_fds: dict[str, int]
    started: float = field(default_factory=time.time)
    last_activity: float = field(default_factory=time.time)
    execution_state: str = "starting"
    connections: int = 0

    def url(self, channel: str) -> str:
        return f"ipc:///proc/self/fd/{self.socket_fds[channel]}"

    def model(self) -> dict[str, Any]:
        """The kernel as Jupyter's REST API shows it."""
        return {
            "id": self.id,
            "name": self.name,
            "last_activity": jupyter_time(self.last_activity),
            "execution_state": self.execution_state,
            "connections": self.connections,
        }

    async def interrupt(self) -> None:
        await self.proc.send_signal(signal.SIGINT)

    async def shutdown(self) -> None:
        await self.proc.terminate(SHUTDOWN_GRACE)
        self.close_fds()

    def close_fds(self) -> None:
        for fd in self.socket_fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.socket_fds = {}


def jupyter_time(ts: float) -> str:
    """A timestamp as Jupyter writes them (ISO 8601, microseconds, UTC)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}Z"


async def start_kernel(sandbox: Sandbox, name: str) -> Kernel:
    """Start ipykernel in the capsule and wait until it answers; kill it on any failure."""
    kernel_id = str(uuid.uuid4())
    stem = "k" + kernel_id[:8]
    key = secrets.token_hex(32)
    # The connection file and the sockets are host files of the capsule.
    paths = sandbox.host_paths()
    inside = sandbox.run_dir_for_processes()
    connection = {
        "transport": "ipc",
        "ip": f"{inside}/{stem}",
        **{f"{channel}_port": number for channel, number in CHANNELS.items()},
        "key": key,
        "signature_scheme": "hmac-sha256",
        "kernel_name": name,
    }
    conn_path = paths.run_dir / f"{stem}.json"
    fd = os.open(conn_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    if paths.owner is not None:
        os.fchown(fd, *paths.owner)  # the kernel runs as the capsule's root
    with os.fdopen(fd, "w") as f:
        json.dump(connection, f)
    env = sandbox.home_env()
    # ipykernel exits when JPY_PARENT_PID names a process it cannot see (none of
    # the server's pids exist in the capsule's pid namespace): never pass it.
    env.pop("JPY_PARENT_PID", None)
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", f"{inside}/{stem}.json"]
    proc = sandbox.start_process(argv, env, "/root", want_pid=False)
    stderr = bytearray()

    def keep_stderr(kind: str, data: bytes) -> None:
        if kind == "stderr":
            stderr.extend(data)
            del stderr[:-_STDERR_KEPT]

    proc.listen(keep_stderr)
    kernel = Kernel(kernel_id, name, proc, key.encode(), {})
    try:
        kernel.socket_fds = await _open_sockets(paths.run_dir, stem, proc)
        await _wait_ready(kernel)
    except BaseException as exc:
        await kernel.shutdown()
        with contextlib.suppress(OSError):
            conn_path.unlink()
        if isinstance(exc, (OSError, asyncio.TimeoutError, KernelStartError)):
            detail = stderr.decode("utf-8", "replace").strip()[-800:]
            raise KernelStartError(f"kernel did not start: {exc}. {detail}".strip()) from None
        raise
    kernel.execution_state = "idle"
    return kernel


class KernelStartError(RuntimeError):
    pass


async def _open_sockets(run_dir: Path, stem: str, proc: CapsuleProcess) -> dict[str, int]:
    dir_fd = os.open(run_dir, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    fds: dict[str, int] = {}
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        for channel in ("shell", "iopub", "control"):
            name = f"{stem}-{CHANNELS[channel]}"
            while True:
                try:
                    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
                except FileNotFoundError:
                    if proc.exited.is_set():
                        raise KernelStartError(proc.describe_exit()) from None
                    if time.monotonic() > deadline:
                        raise asyncio.TimeoutError(f"no {channel} socket after {STARTUP_TIMEOUT} s")
                    await asyncio.sleep(0.02)
                    continue
                if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                    os.close(fd)
                    raise KernelStartError(f"{name} is not a socket")
                fds[channel] = fd
                break
    except BaseException:
        for fd in fds.values():
            os.close(fd)
        raise
    finally:
        os.close(dir_fd)
    return fds


async def _wait_ready(kernel: Kernel) -> None:
    """A kernel_info request answered on the shell channel means the kernel serves."""
    channels = KernelChannels(kernel, ("shell",))
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            request = channels.session.msg("kernel_info_request")
            channels.send("shell", request)
            try:
                while True:
                    remaining = min(1.0, deadline - time.monotonic())
                    if remaining <= 0:
                        raise asyncio.TimeoutError("no kernel_info reply")
                    _, reply = await asyncio.wait_for(channels.receive_any(), remaining)
                    if reply.get("parent_header", {}).get("msg_id") == request["header"]["msg_id"]:
                        return
            except asyncio.TimeoutError:
                if kernel.proc.exited.is_set():
                    raise KernelStartError(kernel.proc.describe_exit()) from None
                if time.monotonic() >= deadline:
                    raise
    finally:
        channels.close()


class KernelChannels:
    """zmq sockets to one kernel, for one client (each has its own session and identity)."""

    def __init__(self, kernel: Kernel, names: tuple[str, ...]) -> None:
        import zmq
        import zmq.asyncio
        from jupyter_client.session import Session

        self.session = Session(key=kernel.key, signature_scheme="hmac-sha256", username="wrenn")
        self._context = zmq.asyncio.Context.instance()
        self._sockets: dict[str, Any] = {}
        kinds = {"shell": zmq.DEALER, "control": zmq.DEALER, "iopub": zmq.SUB}
        try:
            for name in names:
                sock = self._context.socket(kinds[name])
                sock.linger = 0
                if name == "iopub":
                    sock.setsockopt(zmq.SUBSCRIBE, b"")
                else:
                    sock.setsockopt(zmq.IDENTITY, self.session.bsession)
                sock.connect(kernel.url(name))
                self._sockets[name] = sock
        except BaseException:
            self.close()
            raise
        self._receivers: dict[asyncio.Future[Any], str] = {}

    def send(self, channel: str, message: dict[str, Any]) -> None:
        sock = self._sockets.get(channel)
        if sock is None:
            raise KeyError(channel)
        self.session.send(sock, message)

    async def receive_any(self) -> tuple[str, dict[str, Any]]:
        """The next message from any channel, as ``(channel, message)``."""
        while True:
            waiting = set(self._receivers.values())
            for name, sock in self._sockets.items():
                if name not in waiting:
                    self._receivers[asyncio.ensure_future(sock.recv_multipart())] = name
            done, _ = await asyncio.wait(self._receivers, return_when=asyncio.FIRST_COMPLETED)
            future = next(iter(done))
            channel = self._receivers.pop(future)
            frames = future.result()
            try:
                _, parts = self.session.feed_identities(frames)
                message = self.session.deserialize(parts)
            except ValueError:
                log.warning("dropped an invalid message from a kernel on %s", channel)
                continue
            return channel, message

    async def subscribed(self, timeout: float) -> bool:
        """Wait until the iopub subscription is live; False if ``timeout`` passed first.

        A zmq SUB socket receives nothing published before its subscription reaches the
        kernel (the "slow joiner"): a client that sent a cell at once could see the
        cell's idle status but not its result. Each kernel_info request makes the kernel
        publish a status on iopub; the first one that arrives proves the subscription.
        Everything received meanwhile is the server's own traffic and is dropped.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send("shell", self.session.msg("kernel_info_request"))
            nudge_ends = min(deadline, time.monotonic() + SUBSCRIBE_NUDGE)
            while (remaining := nudge_ends - time.monotonic()) > 0:
                try:
                    channel, _ = await asyncio.wait_for(self.receive_any(), remaining)
                except asyncio.TimeoutError:
                    break
                if channel == "iopub":
                    return True
        return False

    def close(self) -> None:
        for future in self._receivers:
            future.cancel()
        self._receivers.clear()
        for sock in self._sockets.values():
            sock.close(linger=0)
        self._sockets.clear()


def to_json(channel: str, message: dict[str, Any]) -> str:
    """A kernel message in the JSON form of Jupyter's kernel WebSocket."""
    from jupyter_client.jsonutil import json_default

    out = {
        "header": message.get("header", {}),
        "parent_header": message.get("parent_header", {}),
        "metadata": message.get("metadata", {}),
        "content": message.get("content", {}),
        "buffers": [],
        "channel": channel,
        "msg_id": message.get("header", {}).get("msg_id", ""),
        "msg_type": message.get("header", {}).get("msg_type", ""),
    }
    return json.dumps(out, default=json_default)
