"""The ASGI side of fault injection: delays, injected answers, dropped connections, cuts.

It sits after the API key check, so an unauthenticated request never fires a rule
(WebSockets check their key in-band, so the key is checked here for them too).
Connections are dropped through the connection's own transport, which the server
finds by the client's address (``transport_of``): a reset is a TCP RST (``SO_LINGER``
0), a cut is a close after the bytes already sent are flushed, so the client reads
everything sent before the cut and then sees the connection end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable, Sequence

from starlette.datastructures import Headers
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._auth import check_key
from ._faults import CutStream, Faults, Reset, Respond
from ._wire import ApiError

log = logging.getLogger("wrenn.local")

TransportOf = Callable[[Scope], "asyncio.BaseTransport | None"]
_DRAIN_LIMIT = 10_000  # receive() calls while waiting for uvicorn to see the drop


def _reset(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()  # type: ignore[attr-defined]


class FaultMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        faults: Faults,
        routes: Sequence[BaseRoute],
        api_key: str,
        transport_of: TransportOf,
    ) -> None:
        self.app = app
        self.faults = faults
        self.routes = routes
        self.api_key = api_key
        self.transport_of = transport_of

    def _route(self, scope: Scope) -> tuple[str | None, str | None]:
        for route in self.routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                params = child.get("path_params", {})
                return getattr(route, "path", None), params.get("id")
        return None, None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if (
            not self.faults
            or kind not in ("http", "websocket")
            or not scope["path"].startswith("/v1/")
            or (kind == "websocket" and check_key(Headers(scope=scope), self.api_key) is not None)
        ):
            await self.app(scope, receive, send)
            return
        template, capsule_id = self._route(scope)
        method = scope.get("method", "GET")  # a WebSocket is a GET upgrade
        delay, answer, cut = self.faults.call_faults(method, scope["path"], template, capsule_id)
        if delay is not None:
            await delay._wait(None, delay.seconds)  # removal (clear) ends it early
        if isinstance(answer, Respond):
            error = ApiError(answer.status, answer.code, answer.message).response()
            error.headers.update(answer.headers())
            await error(scope, receive, send)
            return
        transport = self.transport_of(scope) if answer is not None or cut is not None else None
        if (answer is not None or cut is not None) and transport is None:
            log.warning("fault injection: no connection found for %s", scope.get("client"))
            answer = cut = None
        if isinstance(answer, Reset):
            assert transport is not None
            if kind == "websocket":
                _reset(transport)
                # Ends the handshake for uvicorn (which would log one left open); the
                # connection is already gone, so nothing reaches the client.
                with contextlib.suppress(Exception):
                    await send({"type": "websocket.close", "code": 1006})
                return
            if answer.at == "request":
                _reset(transport)
                await _drained(receive)
                return
            await self.app(scope, receive, _dropping(send, transport, answer.at))
            await _drained(receive)
            return
        if cut is not None:
            assert transport is not None
            cutting = _Cutting(send, transport, cut)
            await self.app(scope, receive, cutting.send)
            if cutting.done and kind == "http":
                await _drained(receive)
            return
        await self.app(scope, receive, send)


async def _drained(receive: Receive) -> None:
    """Wait until uvicorn has seen the connection go, so it neither logs nor answers 500."""
    for _ in range(_DRAIN_LIMIT):
        message = await receive()
        if message["type"] in ("http.disconnect", "websocket.disconnect"):
            return


def _dropping(send: Send, transport: asyncio.BaseTransport, at: str) -> Send:
    """A ``send`` that drops the connection instead of the response (``Reset``)."""
    start: Message | None = None
    dropped = False

    async def wrapped(message: Message) -> None:
        nonlocal start, dropped
        if dropped:
            return
        if message["type"] == "http.response.start":
            start = message
            return
        if message["type"] != "http.response.body":
            await send(message)
            return
        dropped = True
        if at == "response" or start is None:
            _reset(transport)
            return
        body = bytes(message.get("body", b""))
        await send(start)
        await send(
            {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
        )
        transport.close()  # after what was written: the client reads half a body

    return wrapped


class _Cutting:
    """A ``send`` that closes the connection after ``cut.after`` frames (``CutStream``)."""

    def __init__(self, send: Send, transport: asyncio.BaseTransport, cut: CutStream) -> None:
        self._send = send
        self._transport = transport
        self._after = cut.after
        self._events = cut.stream == "events"
        self.sent = 0
        self.done = False

    def _counts(self, message: Message) -> bool:
        if message["type"] == "websocket.send":
            return True
        if message["type"] != "http.response.body":
            return False
        body = message.get("body", b"")
        # SSE comments (:keepalive) are not events.
        return bool(body) and not (self._events and body.startswith(b":"))

    async def send(self, message: Message) -> None:
        if self.done:
            if message["type"].startswith("websocket."):
                raise OSError("the connection was cut by a fault rule")  # as a lost client
            return
        await self._send(message)
        counted = self._counts(message)
        self.sent += counted
        opened = message["type"] in ("websocket.accept", "http.response.start")
        if self.sent >= self._after and (counted or opened):
            self.done = True
            self._transport.close()  # after what was written: the client reads it all


__all__ = ["FaultMiddleware", "TransportOf"]
