"""The guest agent: PID 1 of a wrenn microVM, copied into the image at build time.

It runs under the guest's own ``python3`` (Debian's, standard library only) and is
never imported by the host.  The initramfs ``switch_root``s into the root disk and
execs this file as PID 1.  PID 1 mounts the basics, forks the agent proper and
then only reaps (orphans of background commands are re-parented to it); a
separate process keeps ``subprocess``'s own ``waitpid`` calls free of races with
that reaper.

Protocol: JSON lines over the virtio-serial port ``wrenn.agent``.  Each request
is ``{"id": N, "op": ..., ...}``; each answer ``{"id": N, "ok": true, ...}`` or
``{"id": N, "ok": false, "error": "..."}``.  Requests run in threads, so a long
exec does not block a ping.  Ops: ``ping``, ``exec`` (argv, env, cwd, timeout,
max_output; output base64, cut at the cap with ``truncated``), ``set_clock``
(``unix_ns``), ``reseed`` (base64 ``seed``: mixed into the kernel's entropy pool,
then the kernel's random generator is reseeded), and files in the guest's own filesystem: ``read_file`` (path,
offset, length; base64 ``data``, ``size``, ``eof``), ``write_file`` (path,
offset, base64 data, truncate, mode), ``stat``, ``list_dir`` (path, offset,
limit; ``entries``, ``total``), ``remove`` (path, recursive), ``mkdir`` (path,
parents, mode), ``resolve`` (path, follow, create_parents; ``path``, ``entry``
or null: the server's path rules, see ``_resolve``), ``rename`` (path, target,
mode); and long-running processes: ``start`` (argv, env, cwd, pty, rows,
cols, window, chunk; ``proc``, ``pid``), ``stdin`` (proc, base64 data),
``close_stdin``, ``signal`` (to its process group), ``resize``, ``detach``,
whose output and exit come as events (``guest_processes.py``).  The file ops
are in ``guest_files.py``.
A line without an answer, ``{"op": "ack", ...}``, returns output credit.
A failure caused by an ``OSError`` also carries its ``errno``, so the host can
answer as the server does for host files (no parsing of messages).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

if __package__:  # imported on the host, by tests
    from . import guest_files, guest_processes
else:  # the guest runs this file as a script (``python3 -I``: its directory is not on the path)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import guest_files  # type: ignore[import-not-found,no-redef]
    import guest_processes  # type: ignore[import-not-found,no-redef]

PORT_NAME = "wrenn.agent"
# The host's caps (``_agent.py``), kept here too: this file runs alone in the guest.
# The host asks for them in each request and enforces them again on the answers.
MAX_OUTPUT_BYTES = 1024 * 1024  # of stdout, and of stderr, of one exec
KILL_GRACE = 2.0  # seconds the pipes are still read after a timeout's kill
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "USER": "root",
    "LOGNAME": "root",
    "LANG": "C.UTF-8",
}
MOUNTS = (
    ("proc", "/proc", "proc", "nosuid,nodev,noexec"),
    ("sysfs", "/sys", "sysfs", "nosuid,nodev,noexec"),
    ("devpts", "/dev/pts", "devpts", "gid=5,mode=620,ptmxmode=666"),
    ("tmpfs", "/dev/shm", "tmpfs", "nosuid,nodev"),
    ("tmpfs", "/run", "tmpfs", "nosuid,nodev,mode=755"),
    ("tmpfs", "/tmp", "tmpfs", "nosuid,nodev,mode=1777"),
)


def _mount_basics() -> None:
    for source, target, fstype, options in MOUNTS:
        os.makedirs(target, exist_ok=True)
        subprocess.run(
            ["mount", "-t", fstype, "-o", options, source, target],
            check=False,
            stdin=subprocess.DEVNULL,
        )
    subprocess.run(["hostname", "wrenn"], check=False, stdin=subprocess.DEVNULL)
    # The root disk may be larger than the image's filesystem (the capsule's
    # disk_size_mb): grow it to the whole device, online; nothing to do once grown.
    subprocess.run(
        ["resize2fs", "/dev/vda"],
        check=False,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    subprocess.run(["ip", "link", "set", "lo", "up"], check=False, stderr=subprocess.DEVNULL)


def _find_port(timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/sys/class/virtio-ports").glob("vport*"):
            try:
                name = (entry / "name").read_text().strip()
            except OSError:
                continue
            if name == PORT_NAME and Path("/dev", entry.name).exists():
                return str(Path("/dev", entry.name))
        time.sleep(0.05)
    raise RuntimeError(f"virtio-serial port {PORT_NAME} not found")


class Agent:
    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._write_lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        with self._write_lock:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]

    def serve(self, *, return_on_eof: bool = False) -> None:
        """Answer requests for ever (``return_on_eof``: until EOF, for host-side tests)."""
        pending = b""
        while True:
            chunk = os.read(self._fd, 1 << 16)
            if not chunk:
                if return_on_eof:
                    return
                # No host on the other end (before it connects, or between two QEMU
                # processes around a restore): the port reads EOF until one shows up.
                time.sleep(0.05)
                continue
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                try:
                    request = json.loads(line)
                except ValueError as exc:
                    self.send({"id": None, "ok": False, "error": f"ValueError: {exc}"})
                    continue
                if isinstance(request, dict) and request.get("op") == "ack":
                    guest_processes.acknowledge(request)  # inline: cheap, no answer
                else:
                    threading.Thread(target=self._handle, args=(request,), daemon=True).start()

    def _handle(self, request: Any) -> None:
        request_id: Any = None
        try:
            request_id = request.get("id")
            if request.get("op") == "start":
                answer, then = guest_processes.start(request, self.send, BASE_ENV)
                self.send({"id": request_id, "ok": True, **answer})
                then()  # the pump: its events must come after the answer
                return
            answer = self._dispatch(request)
            self.send({"id": request_id, "ok": True, **answer})
        except Exception as exc:  # every failure is answered, never fatal to the agent
            failure = {"id": request_id, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
            if isinstance(exc, OSError) and isinstance(exc.errno, int):
                failure["errno"] = exc.errno
            self.send(failure)

    def _dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op in guest_processes.OPS:
            return guest_processes.OPS[op](request)
        if op == "ping":
            return {"pid": os.getpid(), "time_ns": time.time_ns()}
        if op == "set_clock":
            time.clock_settime_ns(time.CLOCK_REALTIME, int(request["unix_ns"]))
            return {}
        if op == "reseed":
            _reseed(base64.b64decode(request["seed"], validate=True))
            return {}
        if op == "exec":
            return _run(request)
        if op in guest_files.OPS:
            return guest_files.OPS[op](request)
        raise ValueError(f"unknown op {op!r}")


# _IO('R', 0x07): reseed the kernel's generator from its input pool now (root only).
RNDRESEEDCRNG = 0x5207


def _reseed(seed: bytes) -> None:
    """Make this guest's random numbers its own after a restore.

    Every VM restored from one snapshot starts with the same kernel generator
    state, so two capsules would read the same bytes from /dev/urandom.  Writing
    the host's fresh bytes mixes them into the input pool; the ioctl makes the
    generator take them at once, not at its next scheduled reseed.
    """
    if not 32 <= len(seed) <= 256:
        raise ValueError("a seed is 32 to 256 bytes")
    fd = os.open("/dev/urandom", os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, seed)
        fcntl.ioctl(fd, RNDRESEEDCRNG)
    finally:
        os.close(fd)


def _run(request: dict[str, Any]) -> dict[str, Any]:
    argv = [str(arg) for arg in request["argv"]]
    env = dict(BASE_ENV)
    env.update({str(k): str(v) for k, v in (request.get("env") or {}).items()})
    timeout = float(request.get("timeout") or 30.0)
    limit = min(int(request.get("max_output") or MAX_OUTPUT_BYTES), MAX_OUTPUT_BYTES)
    proc = subprocess.Popen(
        argv,
        cwd=request.get("cwd") or "/root",
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    outputs, truncated, timed_out = _collect(proc, [proc.stdout, proc.stderr], timeout, limit)
    return {
        "exit_code": proc.returncode,
        "timed_out": timed_out,
        "truncated": truncated,
        "stdout": base64.b64encode(outputs[0]).decode(),
        "stderr": base64.b64encode(outputs[1]).decode(),
    }


def _collect(
    proc: subprocess.Popen[bytes], pipes: list[IO[bytes]], timeout: float, limit: int
) -> tuple[list[bytes], bool, bool]:
    """Read the pipes to EOF keeping ``limit`` bytes of each (the rest is read and
    dropped, so the command never blocks on a full pipe); kill the process group
    at ``timeout``.  (outputs, truncated, timed_out)."""
    kept = [bytearray() for _ in pipes]
    truncated = timed_out = False
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for index, pipe in enumerate(pipes):
            selector.register(pipe, selectors.EVENT_READ, index)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if timed_out:
                    break  # a process that left the group holds a pipe: stop reading
                timed_out = True
                _kill_group(proc.pid)
                deadline = time.monotonic() + KILL_GRACE
                continue
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                buffer = kept[key.data]
                room = limit - len(buffer)
                if len(chunk) > room:
                    truncated = True
                buffer += chunk[: max(room, 0)]
    try:
        proc.wait(timeout=KILL_GRACE)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        proc.wait()
    for pipe in pipes:
        pipe.close()
    return [bytes(buffer) for buffer in kept], truncated, timed_out


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _serve_forever() -> None:
    fd = os.open(_find_port(), os.O_RDWR)
    Agent(fd).serve()


def _init() -> None:
    """PID 1: mount, start the agent, reap every child; restart the agent if it dies."""
    _mount_basics()
    agent_pid = 0
    while True:
        if agent_pid == 0:
            agent_pid = os.fork()
            if agent_pid == 0:
                try:
                    _serve_forever()
                finally:
                    os._exit(1)
        try:
            pid, _status = os.wait()
        except ChildProcessError:
            time.sleep(0.5)
            continue
        if pid == agent_pid:
            time.sleep(0.2)
            agent_pid = 0


if __name__ == "__main__":
    if os.getpid() == 1:
        _init()
    else:
        _serve_forever()
