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
(``unix_ns``), and files in the guest's own filesystem: ``read_file`` (path,
offset, length; base64 ``data``, ``size``, ``eof``), ``write_file`` (path,
offset, base64 data, truncate, mode), ``stat``, ``list_dir`` (path, offset,
limit; ``entries``, ``total``), ``remove`` (path, recursive), ``mkdir`` (path,
parents); and long-running processes: ``start`` (argv, env, cwd, pty, rows,
cols, window, chunk; ``proc``, ``pid``), ``stdin`` (proc, base64 data),
``close_stdin``, ``signal`` (to its process group), ``resize``, ``detach``,
whose output and exit come as events (see "long-running processes" below).
A line without an answer, ``{"op": "ack", ...}``, returns output credit.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import pty
import selectors
import shutil
import signal
import stat
import struct
import subprocess
import termios
import threading
import time
from pathlib import Path
from typing import IO, Any

PORT_NAME = "wrenn.agent"
# The host's caps (``_agent.py``), kept here too: this file runs alone in the guest.
# The host asks for them in each request and enforces them again on the answers.
MAX_OUTPUT_BYTES = 1024 * 1024  # of stdout, and of stderr, of one exec
MAX_CHUNK_BYTES = 1024 * 1024  # of a file per read_file answer
MAX_LIST_PAGE = 1000  # entries per list_dir answer
MAX_PROCESSES = 64  # started with ``start`` and not yet reported exited
MAX_EVENT_CHUNK = 64 * 1024  # output bytes per event
CREDIT_WINDOW = 512 * 1024  # unacknowledged output cost per process
CHUNK_COST = 256  # added to each event's cost, so tiny chunks cannot pile up
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
                    _acknowledge(request)  # inline: cheap, no answer
                else:
                    threading.Thread(target=self._handle, args=(request,), daemon=True).start()

    def _handle(self, request: Any) -> None:
        request_id: Any = None
        try:
            request_id = request.get("id")
            if request.get("op") == "start":
                answer, then = _start(self, request)
                self.send({"id": request_id, "ok": True, **answer})
                then()  # the pump: its events must come after the answer
                return
            answer = self._dispatch(request)
            self.send({"id": request_id, "ok": True, **answer})
        except Exception as exc:  # every failure is answered, never fatal to the agent
            self.send({"id": request_id, "ok": False, "error": f"{type(exc).__name__}: {exc}"})

    def _dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op in _PROCESS_OPS:
            return _PROCESS_OPS[op](request)
        if op == "ping":
            return {"pid": os.getpid(), "time_ns": time.time_ns()}
        if op == "set_clock":
            time.clock_settime_ns(time.CLOCK_REALTIME, int(request["unix_ns"]))
            return {}
        if op == "exec":
            return _run(request)
        if op in _FILE_OPS:
            return _FILE_OPS[op](request)
        raise ValueError(f"unknown op {op!r}")


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


def _read_file(request: dict[str, Any]) -> dict[str, Any]:
    length = min(int(request["length"]), MAX_CHUNK_BYTES)
    offset = int(request.get("offset") or 0)
    # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below).
    fd = os.open(request["path"], os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{request['path']!r} is not a regular file")
        size = info.st_size
        parts: list[bytes] = []
        got = 0
        while got < length:
            part = os.pread(fd, length - got, offset + got)
            if not part:
                break
            parts.append(part)
            got += len(part)
    finally:
        os.close(fd)
    data = b"".join(parts)
    return {"data": base64.b64encode(data).decode(), "size": size, "eof": got < length}


def _write_file(request: dict[str, Any]) -> dict[str, Any]:
    data = base64.b64decode(request["data"], validate=True)
    # O_NONBLOCK: a FIFO without a reader fails (ENXIO) instead of hanging.
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK
    if request.get("truncate"):
        flags |= os.O_TRUNC
    fd = os.open(request["path"], flags, int(request.get("mode") or 0o644))
    try:
        view, offset = memoryview(data), int(request.get("offset") or 0)
        while view:
            written = os.pwrite(fd, view, offset)
            view, offset = view[written:], offset + written
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    return {"size": size}


def _describe(path: str, name: str) -> dict[str, Any]:
    info = os.lstat(path)
    kind = (
        "dir"
        if stat.S_ISDIR(info.st_mode)
        else "file"
        if stat.S_ISREG(info.st_mode)
        else "symlink"
        if stat.S_ISLNK(info.st_mode)
        else "other"
    )
    entry = {
        "name": name,
        "type": kind,
        "size": info.st_size,
        "mode": stat.S_IMODE(info.st_mode),
        "mtime_ns": info.st_mtime_ns,
    }
    if kind == "symlink":
        entry["target"] = os.readlink(path)
    return entry


def _stat(request: dict[str, Any]) -> dict[str, Any]:
    return _describe(request["path"], os.path.basename(request["path"]))


def _list_dir(request: dict[str, Any]) -> dict[str, Any]:
    path = request["path"]
    names = sorted(os.listdir(path))
    offset = int(request.get("offset") or 0)
    limit = min(int(request.get("limit") or MAX_LIST_PAGE), MAX_LIST_PAGE)
    entries = []
    for name in names[offset : offset + limit]:
        try:
            entries.append(_describe(os.path.join(path, name), name))
        except FileNotFoundError:
            continue  # removed since the listing
    return {"entries": entries, "total": len(names)}


def _remove(request: dict[str, Any]) -> dict[str, Any]:
    path = request["path"]
    if os.path.isdir(path) and not os.path.islink(path):
        if request.get("recursive"):
            shutil.rmtree(path)
        else:
            os.rmdir(path)
    else:
        os.unlink(path)
    return {}


def _mkdir(request: dict[str, Any]) -> dict[str, Any]:
    if request.get("parents"):
        os.makedirs(request["path"], exist_ok=True)
    else:
        os.mkdir(request["path"])
    return {}


_FILE_OPS = {
    "read_file": _read_file,
    "write_file": _write_file,
    "stat": _stat,
    "list_dir": _list_dir,
    "remove": _remove,
    "mkdir": _mkdir,
}


# -- long-running processes ---------------------------------------------------
#
# ``start`` returns a process id; a pump thread per process sends its output as
# ``{"event": "output", "proc": P, "stream": "stdout"|"stderr"|"pty", "data": b64}``
# and, after the last output, ``{"event": "exit", "proc": P, "exit_code": N}``.
# Flow control is a per-process credit in bytes: each output event costs
# ``len(data) + CHUNK_COST`` and the pump sends only while the unacknowledged
# cost is under the window; the host acknowledges what its reader has taken
# with ``{"op": "ack", "proc": P, "bytes": N}`` (no answer).  Without credit the
# pump stops reading, the pipe fills and the process blocks, as with any pipe.


class GuestProcess:
    def __init__(self, proc_id: int, request: dict[str, Any]) -> None:
        self.id = proc_id
        self.window = min(int(request.get("window") or CREDIT_WINDOW), CREDIT_WINDOW)
        self.chunk = min(int(request.get("chunk") or MAX_EVENT_CHUNK), MAX_EVENT_CHUNK)
        self.credit = self.window
        self.credit_changed = threading.Condition()
        self.detached = False
        self.stdin_lock = threading.Lock()
        argv = [str(arg) for arg in request["argv"]]
        env = dict(BASE_ENV)
        env.update({str(k): str(v) for k, v in (request.get("env") or {}).items()})
        cwd = request.get("cwd") or "/root"
        self.master: int | None = None
        self.stdin: int | None
        if request.get("pty"):
            master, slave = pty.openpty()
            _set_size(master, int(request.get("rows") or 24), int(request.get("cols") or 80))
            env.setdefault("TERM", "xterm")
            try:
                self.popen = subprocess.Popen(
                    argv, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
                    start_new_session=True, preexec_fn=_take_terminal,
                )  # fmt: skip
            except BaseException:
                os.close(master)
                raise
            finally:
                os.close(slave)  # only the child holds it: its exit gives EOF (EIO)
            self.master = self.stdin = master
            self.outputs = {master: "pty"}
        else:
            self.popen = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True,
            )  # fmt: skip
            assert self.popen.stdin and self.popen.stdout and self.popen.stderr
            self.stdin = os.dup(self.popen.stdin.fileno())
            self.popen.stdin.close()
            self.outputs = {
                os.dup(self.popen.stdout.fileno()): "stdout",
                os.dup(self.popen.stderr.fileno()): "stderr",
            }
            self.popen.stdout.close()
            self.popen.stderr.close()

    def acknowledge(self, cost: int) -> None:
        with self.credit_changed:
            self.credit = min(self.window, self.credit + max(0, cost))
            self.credit_changed.notify_all()

    def pump(self, agent: Agent) -> None:
        """Send the output while there is credit, then the exit status."""
        open_fds = dict(self.outputs)
        with selectors.DefaultSelector() as selector:
            for fd in open_fds:
                selector.register(fd, selectors.EVENT_READ)
            while open_fds:
                with self.credit_changed:
                    while self.credit <= CHUNK_COST and not self.detached:
                        self.credit_changed.wait(1.0)
                    room = (
                        self.chunk if self.detached else min(self.chunk, self.credit - CHUNK_COST)
                    )
                ready = selector.select(0.2)
                if not ready and self.popen.poll() is not None:
                    break  # exited and drained (a child it left behind may hold the pipe)
                for key, _ in ready:
                    try:
                        data = os.read(key.fd, room)
                    except OSError:  # EIO: a pty whose other end is gone
                        data = b""
                    if not data:
                        selector.unregister(key.fd)
                        del open_fds[key.fd]
                        if key.fd != self.master:  # the master is stdin too: closed below
                            os.close(key.fd)
                        continue
                    if self.detached:
                        continue
                    with self.credit_changed:
                        self.credit -= len(data) + CHUNK_COST
                    agent.send(
                        {
                            "event": "output",
                            "proc": self.id,
                            "stream": open_fds[key.fd],
                            "data": base64.b64encode(data).decode(),
                        }
                    )
                    break  # back to the credit check before the next read
            for fd in open_fds:
                if fd != self.master:
                    _close_quietly(fd)
        exit_code = self.popen.wait()
        with self.stdin_lock:  # no write or resize is using the fd while it closes
            if self.stdin is not None:
                _close_quietly(self.stdin)
            self.stdin = None
        with PROCESSES_LOCK:
            PROCESSES.pop(self.id, None)
        agent.send({"event": "exit", "proc": self.id, "exit_code": exit_code})

    def write_stdin(self, data: bytes) -> None:
        with self.stdin_lock:
            if self.stdin is None:
                raise ValueError(f"process {self.id}: stdin is closed")
            view = memoryview(data)
            while view:
                view = view[os.write(self.stdin, view) :]

    def close_stdin(self) -> None:
        with self.stdin_lock:
            if self.stdin is not None and self.master is not None:
                os.write(self.stdin, b"\x04")  # a terminal has no EOF of its own: ^D
            elif self.stdin is not None:
                os.close(self.stdin)
                self.stdin = None

    def resize(self, rows: int, cols: int) -> None:
        with self.stdin_lock:
            if self.master is None or self.stdin is None:
                raise ValueError(f"process {self.id} has no terminal (now)")
            _set_size(self.stdin, rows, cols)


def _take_terminal() -> None:
    """In the child, after setsid: make its pty (fd 0) the controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


PROCESSES: dict[int, GuestProcess] = {}
PROCESSES_LOCK = threading.Lock()
_next_proc_id = [1]


def _process(request: dict[str, Any]) -> GuestProcess:
    with PROCESSES_LOCK:
        process = PROCESSES.get(int(request["proc"]))
    if process is None:
        raise ValueError(f"no running process {request['proc']!r}")
    return process


def _start(agent: Agent, request: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    with PROCESSES_LOCK:
        if len(PROCESSES) >= MAX_PROCESSES:
            raise RuntimeError(f"too many processes: at most {MAX_PROCESSES} at once")
        proc_id = _next_proc_id[0]
        _next_proc_id[0] += 1
        process = GuestProcess(proc_id, request)
        PROCESSES[proc_id] = process
    # The pump starts after the answer is sent, so the host knows the id first.
    pump = threading.Thread(target=process.pump, args=(agent,), daemon=True)
    return {"proc": proc_id, "pid": process.popen.pid}, pump.start


def _stdin(request: dict[str, Any]) -> dict[str, Any]:
    _process(request).write_stdin(base64.b64decode(request["data"], validate=True))
    return {}


def _close_stdin(request: dict[str, Any]) -> dict[str, Any]:
    _process(request).close_stdin()
    return {}


def _signal(request: dict[str, Any]) -> dict[str, Any]:
    try:
        os.killpg(_process(request).popen.pid, int(request["signal"]))
    except ProcessLookupError:
        pass  # exited, its last output still on the way
    return {}


def _resize(request: dict[str, Any]) -> dict[str, Any]:
    _process(request).resize(int(request["rows"]), int(request["cols"]))
    return {}


def _detach(request: dict[str, Any]) -> dict[str, Any]:
    """The host forgets the process: its output is read and dropped from now on."""
    process = _process(request)
    with process.credit_changed:
        process.detached = True
        process.credit_changed.notify_all()
    return {}


def _acknowledge(message: dict[str, Any]) -> None:
    try:
        with PROCESSES_LOCK:
            process = PROCESSES.get(int(message["proc"]))
        if process is not None:
            process.acknowledge(int(message["bytes"]))
    except (ValueError, KeyError, TypeError):
        pass  # notifications are not answered


_PROCESS_OPS = {
    "stdin": _stdin,
    "close_stdin": _close_stdin,
    "signal": _signal,
    "resize": _resize,
    "detach": _detach,
}


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
