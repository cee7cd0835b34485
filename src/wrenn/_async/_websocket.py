"""A client WebSocket that reads only when asked.

httpx performs the upgrade (so auth, proxies, TLS, timeouts and error mapping are
the same as for every other request) and wsproto speaks the frame protocol over the
upgraded connection. Unlike a session with a background reader, nothing runs between
two calls: no task group is left open across user code (so iterating a stream inside
someone else's cancel scope is safe under trio), and the blocking twin starts no
threads. Liveness is checked inline: when the server has been silent for
``ping_interval`` the next read sends a ping and waits ``ping_timeout`` for any byte.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import httpcore
import httpx
import wsproto
import wsproto.connection
import wsproto.events
import wsproto.utilities

from .._compat import AsyncCleanupScope, AsyncLock
from .._config import ClientOptions
from .._constants import (
    CLOSE_REPLY_WAIT,
    WS_MAX_MESSAGE_BYTES,
    WS_PING_INTERVAL,
    WS_PING_TIMEOUT,
    WS_READ_CHUNK,
    WS_WRITE_TIMEOUT,
)

# Defined with the other errors; the code runner imports it from here.
from .._exceptions import DeadlineReached as DeadlineReached
from .._exceptions import (
    WrennStreamError,
    WrennStreamInterruptedError,
    WrennStreamTimeoutError,
)
from ._requester import AsyncRequester

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class AsyncWebSocket:
    """One open WebSocket connection; ``receive()`` returns the next message or None at the end."""

    def __init__(
        self,
        response: httpx.Response,
        *,
        ping_interval: float = WS_PING_INTERVAL,
        ping_timeout: float = WS_PING_TIMEOUT,
        max_message_bytes: int = WS_MAX_MESSAGE_BYTES,
    ) -> None:
        self._response = response
        self._stream: Any = response.extensions["network_stream"]
        self._protocol = wsproto.connection.Connection(wsproto.connection.ConnectionType.CLIENT)
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._max_message_bytes = max_message_bytes
        self._messages: deque[str | bytes] = deque()
        self._partial: list[Any] = []
        self._partial_size = 0
        self._last_heard = time.monotonic()
        self._ping_sent_at: float | None = None
        self._write_lock = AsyncLock()
        self._ended = False
        self._released = False
        self.close_code: int | None = None
        self.close_reason: str | None = None

    @property
    def ended(self) -> bool:
        """True once the server closed (or dropped) the connection, or ``aclose`` ran."""
        return self._ended

    async def send_text(self, text: str) -> None:
        await self._send(wsproto.events.TextMessage(data=text))

    async def send_bytes(self, data: bytes) -> None:
        await self._send(wsproto.events.BytesMessage(data=data))

    async def _send(self, event: wsproto.events.Event) -> None:
        if self._ended:
            raise WrennStreamInterruptedError("the WebSocket is closed", close_code=self.close_code)
        try:
            payload = self._protocol.send(event)
        except wsproto.utilities.LocalProtocolError as exc:
            raise WrennStreamInterruptedError(
                "the WebSocket is closing", close_code=self.close_code
            ) from exc
        await self._write(payload)

    async def _write(self, payload: bytes) -> None:
        try:
            async with self._write_lock:
                await self._stream.write(payload, timeout=WS_WRITE_TIMEOUT)
        except (httpcore.WriteError, httpcore.WriteTimeout, OSError) as exc:
            self._ended = True
            raise WrennStreamInterruptedError(
                f"the WebSocket connection broke while sending ({type(exc).__name__})"
            ) from exc

    async def receive(self, deadline: float | None = None) -> str | bytes | None:
        """The next complete message, or None once the connection has ended.

        After None, ``close_code`` is the server's close code, or None when the
        connection was dropped without a close frame. Raises ``WrennStreamTimeoutError``
        when the server stops answering keepalive pings, and ``DeadlineReached`` when the
        ``time.monotonic()`` deadline passes first (the connection stays usable).
        """
        while not self._messages:
            if self._ended:
                return None
            await self._read_some(deadline)
        return self._messages.popleft()

    async def _read_some(self, deadline: float | None) -> None:
        now = time.monotonic()
        if deadline is not None and deadline <= now:
            raise DeadlineReached
        if self._ping_sent_at is None:
            wait = self._last_heard + self._ping_interval - now
            if wait <= 0:
                self._ping_sent_at = now
                await self._write(self._protocol.send(wsproto.events.Ping(payload=os.urandom(4))))
                return
        else:
            wait = self._ping_sent_at + self._ping_timeout - now
            if wait <= 0:
                await self.aclose(code=1011, wait_for_reply=False)
                raise WrennStreamTimeoutError(
                    f"the server did not answer a keepalive ping within {self._ping_timeout:g} s"
                )
        if deadline is not None:
            wait = min(wait, deadline - now)
        try:
            data = await self._stream.read(WS_READ_CHUNK, timeout=wait)
        except httpcore.ReadTimeout:
            return
        except (httpcore.ReadError, OSError):
            data = b""
        if not data:
            self._ended = True  # dropped without a close frame
            await self._release()
            return
        self._last_heard = time.monotonic()
        self._ping_sent_at = None
        try:
            self._protocol.receive_data(data)
            events = list(self._protocol.events())
        except wsproto.utilities.RemoteProtocolError as exc:
            await self.aclose(code=1002, wait_for_reply=False)
            raise WrennStreamInterruptedError(
                f"the server broke the WebSocket protocol: {exc}", close_code=1002
            ) from exc
        for event in events:
            await self._handle(event)

    async def _handle(self, event: wsproto.events.Event) -> None:
        if isinstance(event, wsproto.events.Ping):
            await self._write(self._protocol.send(event.response()))
        elif isinstance(event, wsproto.events.CloseConnection):
            self.close_code, self.close_reason = event.code, event.reason
            if self._protocol.state is wsproto.connection.ConnectionState.REMOTE_CLOSING:
                try:
                    await self._write(self._protocol.send(event.response()))
                except WrennStreamInterruptedError:
                    pass
            self._ended = True
            await self._release()
        elif isinstance(event, wsproto.events.Message):
            self._partial.append(event.data)
            self._partial_size += len(event.data)
            if self._partial_size > self._max_message_bytes:
                await self.aclose(code=1009, wait_for_reply=False)
                raise WrennStreamError(
                    "message_too_large", "a WebSocket message exceeded the size limit"
                )
            if event.message_finished:
                parts, self._partial, self._partial_size = self._partial, [], 0
                if isinstance(event, wsproto.events.TextMessage):
                    self._messages.append("".join(parts))
                else:
                    self._messages.append(b"".join(parts))

    async def aclose(self, code: int = 1000, *, wait_for_reply: bool = True) -> None:
        """Send a close frame (if still possible) and release the connection. Idempotent.

        After the close frame, messages still in flight are read and dropped until the
        server's close reply (at most ``CLOSE_REPLY_WAIT`` seconds): closing a socket
        with unread data makes the kernel reset the connection, and the reset can
        destroy the close frame before the server reads it.
        """
        with AsyncCleanupScope(2.0):
            if not self._ended and self._protocol.state is wsproto.connection.ConnectionState.OPEN:
                try:
                    await self._write(
                        self._protocol.send(wsproto.events.CloseConnection(code=code))
                    )
                except (WrennStreamInterruptedError, wsproto.utilities.LocalProtocolError):
                    pass
                else:
                    if wait_for_reply:
                        await self._await_close_reply(time.monotonic() + CLOSE_REPLY_WAIT)
            self._ended = True
            await self._release()

    async def _await_close_reply(self, deadline: float) -> None:
        for _ in range(4096):  # bounded in count as well as in time
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                data = await self._stream.read(WS_READ_CHUNK, timeout=remaining)
            except (httpcore.ReadTimeout, httpcore.ReadError, OSError):
                return
            if not data:
                return
            try:
                self._protocol.receive_data(data)
                events = list(self._protocol.events())
            except wsproto.utilities.RemoteProtocolError:
                return
            if any(isinstance(event, wsproto.events.CloseConnection) for event in events):
                return

    async def _release(self) -> None:
        if self._released:
            return
        self._released = True
        with AsyncCleanupScope(2.0):
            try:
                await self._stream.aclose()
            finally:
                await self._response.aclose()


def _handshake_headers() -> tuple[dict[str, str], str]:
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    accept = base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": key,
    }
    return headers, accept


async def aconnect_websocket(
    requester: AsyncRequester,
    options: ClientOptions,
    path: str,
    *,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    deadline: float | None = None,
    credentials: bool = True,
) -> AsyncWebSocket:
    """Upgrade ``GET path`` to a WebSocket, with the same retries and errors as any GET.

    ``headers``, ``deadline`` and ``credentials`` as for ``AsyncRequester.request``.
    """
    handshake, accept = _handshake_headers()
    response = await requester.open_stream(
        options,
        "GET",
        path,
        params=params,
        headers={**(headers or {}), **handshake},
        ok=(101,),
        deadline=deadline,
        credentials=credentials,
    )
    if response.headers.get("sec-websocket-accept") != accept:
        await response.aclose()
        raise WrennStreamError(
            "bad_handshake", "the server's WebSocket handshake answer is invalid"
        )
    # The module constants are read at call time, so they can be tuned (and tests can
    # shorten them) without touching every caller.
    return AsyncWebSocket(response, ping_interval=WS_PING_INTERVAL, ping_timeout=WS_PING_TIMEOUT)
