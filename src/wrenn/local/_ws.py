"""WebSocket endpoints: exec stream, process attach and PTY.

Auth and capsule errors after the upgrade are in-band ``error`` frames, as on
the platform; only a malformed capsule id is refused before the upgrade (400).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import codecs
import contextlib
import json
import signal
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from ._auth import check_key
from ._capsules import Manager
from ._live import Live, Tracked
from ._proc import FlowQueue
from ._validate import env_map, field, integer, str_list
from ._wire import CAPSULE_ID_RE, ApiError, GoJSONResponse, go_json

# A client that connects and never sends its start frame is closed after this
# long, so idle sockets cannot pile up on the server.
START_TIMEOUT = 10.0
MAX_PTY_SIZE = 65535  # TIOCSWINSZ holds 16-bit columns and rows


class WSSettings:
    def __init__(
        self,
        manager: Manager,
        api_key: str,
        pty_ping_interval: float,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.manager = manager
        self.api_key = api_key
        self.pty_ping_interval = pty_ping_interval
        self.start_timeout = start_timeout


async def _send(ws: WebSocket, obj: dict[str, Any]) -> None:
    await ws.send_text(go_json(obj).decode("utf-8").rstrip("\n"))


async def _fail(ws: WebSocket, message: str, *, fatal: bool | None = None) -> None:
    frame: dict[str, Any] = {"type": "error", "data": message}
    if fatal:
        frame["fatal"] = True
    with contextlib.suppress(Exception):
        await _send(ws, frame)
        await ws.close()


async def _open(ws: WebSocket, settings: WSSettings) -> tuple[str, Live] | None:
    """Validate id (pre-upgrade), accept, check auth and state; None if refused."""
    capsule_id = ws.path_params["id"]
    if not CAPSULE_ID_RE.match(capsule_id):
        body = GoJSONResponse(
            {"error": {"code": "invalid_request", "message": "invalid sandbox ID"}}, 400
        )
        try:
            await ws.send_denial_response(body)
        except RuntimeError:
            await ws.close(code=1008)
        return None
    await ws.accept()
    if check_key(ws.headers, settings.api_key) is not None:
        await _fail(ws, "authentication failed")
        return None
    try:
        _, live = settings.manager.require_running(capsule_id)
    except ApiError as exc:
        await _fail(ws, exc.message)
        return None
    return capsule_id, live


async def _receive_json(ws: WebSocket) -> dict[str, Any] | None:
    """The next JSON object from the client; None on disconnect or a non-object."""
    msg = await ws.receive()
    if msg["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(msg.get("code", 1000))
    raw = msg.get("text")
    if raw is None:
        raw = (msg.get("bytes") or b"").decode("utf-8", "replace")
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        return None
    return obj if isinstance(obj, dict) else None


async def _first_frame(ws: WebSocket, settings: WSSettings) -> dict[str, Any] | None:
    """The start frame; None (after an error frame) if it does not come in time.

    Raises WebSocketDisconnect if the client goes away first.
    """
    try:
        first = await asyncio.wait_for(_receive_json(ws), settings.start_timeout)
    except asyncio.TimeoutError:
        await _fail(ws, f"no start message within {settings.start_timeout:g}s", fatal=True)
        return None
    return first or {}


async def _relay(
    ws: WebSocket,
    tracked: Tracked,
    queue: FlowQueue,
    remove: Callable[[], None],
    *,
    kill_on_stop: bool,
) -> None:
    """Forward a process's output until it exits; read client frames meanwhile."""
    decoders = {k: codecs.getincrementaldecoder("utf-8")("replace") for k in ("stdout", "stderr")}

    async def client() -> None:
        while True:
            msg = await _receive_json(ws)
            if msg and msg.get("type") == "stop" and kill_on_stop:
                await tracked.proc.send_signal(signal.SIGKILL)

    reader = asyncio.create_task(client())
    try:
        await _send(ws, {"type": "start", "pid": tracked.pid})
        if tracked.proc.exited.is_set():
            queue.put_nowait(("exit", b""))
        while True:
            getter = asyncio.create_task(queue.get())
            done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                return  # the client went away
            kind, data = getter.result()
            if kind == "exit":
                for k, dec in decoders.items():
                    tail = dec.decode(b"", final=True)
                    if tail:
                        await _send(ws, {"type": k, "data": tail})
                await _send(ws, {"type": "exit", "exit_code": tracked.proc.exit_code})
                return
            text = decoders[kind].decode(data)
            if text:
                await _send(ws, {"type": kind, "data": text})
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        remove()
        queue.close()
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
        with contextlib.suppress(Exception):
            await ws.close()


async def exec_stream(ws: WebSocket) -> None:
    settings: WSSettings = ws.app.state.ws
    opened = await _open(ws, settings)
    if opened is None:
        return
    capsule_id, live = opened
    try:
        first = await _first_frame(ws, settings)
    except WebSocketDisconnect:
        return
    if first is None:
        return
    if first.get("type") != "start":
        await _fail(ws, "first message must be of type 'start'")
        return
    try:
        cmd = field(first, "cmd", str, "")
        args = str_list(first, "args")
        envs = env_map(first)
        cwd = field(first, "cwd", str, "")
    except ApiError as exc:
        await _fail(ws, f"invalid start message: {exc.message}")
        return
    if not cmd:
        await _fail(ws, "cmd is required")
        return
    # Bounded: a slow reader holds the process's output (backpressure) instead
    # of having the server buffer all of it.
    queue = FlowQueue()
    try:
        tracked, remove = await settings.manager.start_stream(
            capsule_id, live, cmd, args, envs, cwd, queue.put
        )
    except ApiError as exc:
        await _fail(ws, exc.message)
        return
    queue.attach_process(tracked.proc)
    await _relay(ws, tracked, queue, remove, kill_on_stop=True)


async def process_stream(ws: WebSocket) -> None:
    settings: WSSettings = ws.app.state.ws
    opened = await _open(ws, settings)
    if opened is None:
        return
    capsule_id, live = opened
    selector = ws.path_params["selector"]
    try:
        tracked = settings.manager.find_process(live, selector)
    except ApiError as exc:  # a selector no process could have (a 30-digit pid, say)
        await _fail(ws, f"failed to connect to process: {exc.message}")
        return
    if tracked is None:
        await _fail(ws, f"failed to connect to process: process not found: {selector}")
        return
    settings.manager.touch(capsule_id)
    queue = FlowQueue()
    queue.attach_process(tracked.proc)
    remove = tracked.proc.listen(queue.put)
    await _relay(ws, tracked, queue, remove, kill_on_stop=False)


def _size(value: Any) -> int:
    """A resize frame's cols/rows; 0 (ignored) unless a usable terminal size."""
    return value if type(value) is int and 0 < value <= MAX_PTY_SIZE else 0


async def pty(ws: WebSocket) -> None:
    settings: WSSettings = ws.app.state.ws
    opened = await _open(ws, settings)
    if opened is None:
        return
    capsule_id, live = opened
    manager = settings.manager
    try:
        first = await _first_frame(ws, settings)
    except WebSocketDisconnect:
        return
    if first is None:
        return
    kind = first.get("type")
    queue = FlowQueue()

    def enqueue(k: str, d: bytes) -> None:
        queue.put(k, d)

    if kind == "start":
        try:
            cmd = field(first, "cmd", str, "") or "/bin/bash"
            args = str_list(first, "args")
            envs = env_map(first)
            cwd = field(first, "cwd", str, "")
            # 0 or absent means the default size, as before.
            cols = integer(first, "cols", 0, 0, MAX_PTY_SIZE) or 80
            rows = integer(first, "rows", 0, 0, MAX_PTY_SIZE) or 24
        except ApiError as exc:
            await _fail(ws, f"invalid start message: {exc.message}", fatal=True)
            return
        try:
            session, pid, remove = await manager.pty_start(
                capsule_id, live, [cmd, *args], envs, cwd, cols, rows, enqueue
            )
        except ApiError as exc:
            await _fail(ws, exc.message, fatal=True)
            return
    elif kind == "connect":
        try:
            tag = field(first, "tag", str, "")
        except ApiError as exc:
            await _fail(ws, f"invalid connect message: {exc.message}", fatal=True)
            return
        found = live.ptys.get(tag)
        if found is None:
            await _fail(ws, f"pty session not found: {tag}", fatal=True)
            return
        session = found
        manager.touch(capsule_id)
        remove = session.listen(enqueue)
        pid = await session.proc.resolve()
    else:
        await _fail(ws, "first message must be 'start' or 'connect'", fatal=True)
        return
    queue.attach(session.hold_output, session.release_output)
    # Also on connect, unlike v0.1.5: the client learns the pid it re-attached to.
    await _send(ws, {"type": "started", "tag": session.tag, "pid": pid})

    if session.done.is_set():
        queue.put_nowait(("exit", b""))

    async def client() -> None:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            if msg.get("bytes") is not None:
                manager.touch(capsule_id)
                session.write(msg["bytes"])
                continue
            try:
                obj = json.loads(msg.get("text") or "")
            except ValueError:
                continue
            if not isinstance(obj, dict):
                continue
            t = obj.get("type")
            if t == "input" and isinstance(obj.get("data"), str):
                with contextlib.suppress(binascii.Error, ValueError):
                    manager.touch(capsule_id)
                    session.write(base64.b64decode(obj["data"], validate=True))
            elif t == "resize":
                session.resize(_size(obj.get("cols")), _size(obj.get("rows")))
            elif t == "kill":
                await session.kill()

    async def server() -> None:
        while True:
            try:
                k, data = await asyncio.wait_for(queue.get(), settings.pty_ping_interval)
            except asyncio.TimeoutError:
                await _send(ws, {"type": "ping"})
                continue
            if k == "output":
                await ws.send_bytes(data)
            elif k == "exit":
                await _send(ws, {"type": "exit", "exit_code": session.exit_code})
                # Like the platform, stay open until the client closes.

    reader = asyncio.create_task(client())
    writer = asyncio.create_task(server())
    try:
        await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        remove()
        queue.close()
        for task in (reader, writer):
            task.cancel()
        for task in (reader, writer):
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(Exception):
            await ws.close()
