"""uvicorn's h11 protocol with deadlines for the request head and body.

uvicorn has no header timeout: a client that opens a connection and sends
half a request line (or nothing) holds a socket and a file descriptor for as
long as it likes, and a thousand of them exhaust the server's descriptors, so
``/health`` and the API stop answering. This protocol closes a connection whose
first request head is not complete within ``HEADER_TIMEOUT`` seconds. Idle
keep-alive connections are already closed by uvicorn (``timeout_keep_alive``),
and a head larger than ``h11_max_incomplete_event_size`` answers 400.

A request body has the same gap: a client that sends a head with
``Content-Length: 1000000`` and then a byte now and then holds its connection
(and the handler awaiting the body) indefinitely. Once a head is complete, the
body must keep moving (no ``BODY_IDLE_TIMEOUT`` seconds without a byte) and be
complete within ``BODY_TIMEOUT`` seconds, which no honest client on this
machine comes near (the largest body, a 100 MiB file upload, takes well under a
second over loopback). The connection is then closed; the handler sees a
disconnect.

This is the one place that touches uvicorn's internals: it subclasses its h11
protocol and finds a request's connection among the server's (fault injection
resets connections). What it relies on (``conn``, ``loop``, ``transport``,
``flow``, ``handle_events``; ``server_state.connections`` and each one's
``client``) is checked by ``tests/local/test_local_edge.py`` against the
installed uvicorn.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT = 10.0  # seconds from connect to a complete request head
BODY_IDLE_TIMEOUT = 30.0  # seconds a request body may go without a byte
BODY_TIMEOUT = 300.0  # seconds from a complete head to a complete body


class HeadDeadlineH11Protocol(H11Protocol):
    header_timeout = HEADER_TIMEOUT
    body_idle_timeout = BODY_IDLE_TIMEOUT
    body_timeout = BODY_TIMEOUT
    _head_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None
    _body_started = 0.0
    _body_seen = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_expired)

    def data_received(self, data: bytes) -> None:
        self._body_seen = self.loop.time()
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        # h11 leaves IDLE only once a whole request head has been parsed; from
        # then on the request (or the WebSocket it upgraded to) owns the socket.
        state = self.conn.their_state
        if self._head_timer is not None and state is not h11.IDLE:
            self._cancel_head_timer()
        if state is h11.SEND_BODY and self._body_timer is None:
            self._body_started = self._body_seen = self.loop.time()
            self._body_timer = self.loop.call_later(self.body_idle_timeout, self._check_body)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()
        super().connection_lost(exc)

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _check_body(self) -> None:
        self._body_timer = None
        if self.conn.their_state is not h11.SEND_BODY or self.transport.is_closing():
            return  # the body is complete (the next request arms a new check)
        now = self.loop.time()
        if self.flow.read_paused:
            # The handler is behind, not the client: reading is paused on our side.
            self._body_seen = now
        idle_until = self._body_seen + self.body_idle_timeout
        total_until = self._body_started + self.body_timeout
        if now >= idle_until or now >= total_until:
            self.transport.close()
            return
        self._body_timer = self.loop.call_later(
            min(idle_until, total_until) - now, self._check_body
        )

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def connection_transport(server: uvicorn.Server, scope: Any) -> asyncio.BaseTransport | None:
    """The transport of the connection an ASGI request ``scope`` came on, if still open."""
    client = scope.get("client")
    if client is None:
        return None
    for connection in server.server_state.connections:
        if getattr(connection, "client", None) == tuple(client):
            transport: asyncio.BaseTransport | None = getattr(connection, "transport", None)
            return transport
    return None
