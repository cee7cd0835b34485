"""Interactive terminals inside a capsule, over a WebSocket."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._exceptions import WrennStreamError, WrennStreamInterruptedError
from .._models_base import json_encoder
from .._pty import PtyEvent, PtyEventType, parse_pty_message
from .._urls import build_path
from ._websocket import AsyncWebSocket
from .lease import AsyncLeaseHold

if TYPE_CHECKING:
    from .client import AsyncWrennClient


class AsyncPtySession:
    """A terminal: write keystrokes, resize it, iterate its output events.

    As a context manager it opens on entry; on exit a session it started is killed
    (one it re-attached to with ``pty_connect`` is left running) and the connection is
    closed. Iteration stops after the ``exit`` event or a fatal error. With
    ``keepalive=True`` a lease keeps the capsule from auto-pausing for the block (a
    terminal's keystrokes do not reset the platform's inactivity timer).
    """

    def __init__(
        self,
        client: AsyncWrennClient,
        capsule_id: str,
        first: dict[str, Any],
        *,
        kill_on_exit: bool,
        keepalive: bool = False,
    ) -> None:
        self._client = client
        self._hold = AsyncLeaseHold(client.capsules.lease(capsule_id) if keepalive else None)
        self._capsule_id = capsule_id
        self._first = first
        self._kill_on_exit = kill_on_exit
        self._socket: AsyncWebSocket | None = None
        self._pending: list[PtyEvent] = []
        self._finished = False
        self._exited = False
        self.tag: str | None = first.get("tag")
        self.pid: int | None = None
        self.exit_code: int | None = None

    async def _open(self) -> AsyncWebSocket:
        self._hold.require_block("terminal")
        socket = await self._client._api._ws(
            build_path("/v1/capsules/{id}/pty", id=self._capsule_id)
        )
        self._socket = socket
        await socket.send_text(json_encoder.encode(self._first).decode())
        if self._first.get("type") == "start":
            # Learn the session's tag and pid before handing it over, so they are
            # known even if the caller never iterates.
            while self.tag is None:
                event = await self._receive(socket)
                if event is None:
                    raise WrennStreamInterruptedError("the terminal closed before it started")
                self._pending.append(event)
                if event.type is PtyEventType.error and event.fatal:
                    raise WrennStreamError(
                        "pty_error", f"the terminal could not start: {event.data!r}"
                    )
        else:
            await self._learn_pid()
        return socket

    async def _learn_pid(self) -> None:
        # A re-attach gets no "started" event from every server version; the process
        # list knows the pid of a tagged session.
        from .commands import AsyncCommands

        for process in await AsyncCommands(self._client, self._capsule_id).list():
            if process.tag == self.tag:
                self.pid = process.pid
                return

    async def _receive(self, socket: AsyncWebSocket) -> PtyEvent | None:
        while True:
            message = await socket.receive()
            if message is None:
                return None
            try:
                event = parse_pty_message(message)
            except ValueError as exc:
                raise WrennStreamError("invalid_frame", str(exc)) from exc
            if event.type is PtyEventType.ping:
                await socket.send_text('{"type":"pong"}')
                continue
            if event.type is PtyEventType.started:
                self.tag = event.tag or self.tag
                self.pid = event.pid if event.pid is not None else self.pid
            return event

    async def __aenter__(self) -> AsyncPtySession:
        await self._hold.enter()
        if self._socket is None:
            try:
                await self._open()
            except BaseException as exc:
                await self._hold.exit(type(exc), exc, exc.__traceback__)
                raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._kill_on_exit and not self._exited:
                await self.kill()
            await self.aclose()
        finally:
            await self._hold.exit(exc_type, exc, tb)

    def __aiter__(self) -> AsyncPtySession:
        return self

    async def __anext__(self) -> PtyEvent:
        if self._pending:
            return self._pending.pop(0)
        if self._finished:
            raise StopAsyncIteration
        socket = self._socket if self._socket is not None else await self._open()
        if self._pending:
            return self._pending.pop(0)
        event = await self._receive(socket)
        if event is None:
            await self.aclose()
            if not self._exited:
                raise WrennStreamInterruptedError(
                    "the terminal connection ended before the exit event",
                    close_code=socket.close_code,
                )
            raise StopAsyncIteration
        if event.type is PtyEventType.exit:
            self._exited = True
            self.exit_code = event.exit_code
            self._finished = True
        elif event.type is PtyEventType.error and event.fatal:
            self._finished = True
        return event

    async def _socket_or_open(self) -> AsyncWebSocket:
        return self._socket if self._socket is not None else await self._open()

    async def write(self, data: bytes | str) -> None:
        """Send keystrokes (text is encoded as UTF-8)."""
        if isinstance(data, str):
            data = data.encode()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"data must be bytes or str, not {type(data).__name__}")
        await (await self._socket_or_open()).send_bytes(bytes(data))

    async def resize(self, cols: int, rows: int) -> None:
        """Change the terminal size."""
        for name, value in (("cols", cols), ("rows", rows)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int")
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        message = json_encoder.encode({"type": "resize", "cols": cols, "rows": rows}).decode()
        await (await self._socket_or_open()).send_text(message)

    async def kill(self) -> None:
        """Kill the terminal's process."""
        socket = self._socket
        if socket is not None and not socket.ended:
            try:
                await socket.send_text('{"type":"kill"}')
            except WrennStreamInterruptedError:
                pass

    async def aclose(self) -> None:
        """Close the connection (the session keeps running unless killed). Idempotent."""
        self._finished = True
        socket, self._socket = self._socket, None
        if socket is not None:
            await socket.aclose()
