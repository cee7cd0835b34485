"""Server side of a WebSocket session, on top of wsproto's frame layer.

The handshake is done by hand (we already parsed the upgrade request), then
``wsproto.connection.Connection`` only encodes and decodes frames. That keeps
misbehaviour easy: not answering pings, dropping TCP without a close frame, or
sending a 1011 close are just "don't call X" or "write these bytes".
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from typing import Any

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    TextMessage,
)

from .log import FaultLog, WsEvent

__all__ = ["WsSession", "accept_key"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_MESSAGE = 1024 * 1024


def accept_key(client_key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(client_key.encode("ascii") + _GUID).digest()).decode()


class WsSession:
    """One accepted WebSocket connection.

    ``answer_pings=False`` makes a silent peer: pings are logged but never
    answered, and a close frame from the client gets no reply.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        log: FaultLog,
        key: str,
        conn_id: int,
        *,
        answer_pings: bool = True,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._log = log
        self._key = key
        self._conn_id = conn_id
        self._answer = answer_pings
        self._ws = Connection(ConnectionType.SERVER)
        self._pending: list[Event] = []
        self._partial: list[str | bytes] = []
        self.client_closed = False  # a close frame arrived from the client
        self.eof = False  # TCP closed by the client

    def _record(self, kind: str, **fields: Any) -> None:
        self._log.add_ws(WsEvent(self._key, self._conn_id, kind, time.monotonic(), **fields))

    async def _write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    @property
    def open(self) -> bool:
        return self._ws.state is ConnectionState.OPEN and not self.eof

    async def send_json(self, value: Any) -> None:
        await self.send_text(json.dumps(value, separators=(",", ":")))

    async def send_text(self, text: str) -> None:
        await self._write(self._ws.send(TextMessage(data=text)))

    async def send_close(self, code: int, reason: str = "") -> None:
        if self._ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            await self._write(self._ws.send(CloseConnection(code=code, reason=reason)))
            self._record("sent_close", code=code, reason=reason)

    async def receive(self, timeout: float) -> str | bytes | None:
        """Next complete message from the client, or None on close/EOF/timeout.

        Control frames are handled here: pings answered (unless silent), the
        client's close frame logged and (unless silent) answered.
        """
        deadline = time.monotonic() + timeout
        # Bounded by the deadline; each pass either consumes an event or waits.
        while True:
            while self._pending:
                event = self._pending.pop(0)
                result = await self._handle(event)
                if result is not None:
                    return result
                if self.client_closed:
                    return None
            if self.eof or self._ws.state is ConnectionState.CLOSED:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                data = await asyncio.wait_for(self._reader.read(65536), remaining)
            except asyncio.TimeoutError:
                return None
            except ConnectionError:
                data = b""
            if not data:
                self.eof = True
                if not self.client_closed:
                    self._record("eof")
                return None
            self._ws.receive_data(data)
            self._pending.extend(self._ws.events())

    async def _handle(self, event: Event) -> str | bytes | None:
        if isinstance(event, Message):
            self._partial.append(event.data)
            if sum(len(p) for p in self._partial) > _MAX_MESSAGE:
                raise ConnectionError("websocket message too large")
            if not event.message_finished:
                return None
            if isinstance(event, TextMessage):
                message: str | bytes = "".join(p for p in self._partial if isinstance(p, str))
                self._record("text", data=message)
            else:
                assert isinstance(event, BytesMessage)
                message = b"".join(p for p in self._partial if isinstance(p, bytes))
                self._record("bytes", data=message)
            self._partial.clear()
            return message
        if isinstance(event, Ping):
            self._record("ping", data=bytes(event.payload))
            if self._answer:
                await self._write(self._ws.send(event.response()))
            return None
        if isinstance(event, CloseConnection):
            self.client_closed = True
            self._record("close", code=event.code, reason=event.reason)
            if self._answer and self._ws.state is ConnectionState.REMOTE_CLOSING:
                await self._write(self._ws.send(event.response()))
            return None
        return None  # Pong and anything else: nothing to do

    async def drain_until_closed(self, timeout: float) -> None:
        """Read (and log) client frames until it closes or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while not (self.client_closed or self.eof):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await self.receive(remaining)
