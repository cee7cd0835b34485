"""uvicorn's h11 protocol with a deadline for the request head.

uvicorn has no header timeout: a client that opens a connection and sends
half a request line (or nothing) holds a socket and a file descriptor for as
long as it likes, and a thousand of them exhaust the server's descriptors, so
``/health`` and the API stop answering. This protocol closes a connection whose
first request head is not complete within ``HEADER_TIMEOUT`` seconds. Idle
keep-alive connections are already closed by uvicorn (``timeout_keep_alive``),
and a head larger than ``h11_max_incomplete_event_size`` answers 400.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT = 10.0  # seconds from connect to a complete request head


class HeadDeadlineH11Protocol(H11Protocol):
    header_timeout = HEADER_TIMEOUT
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_expired)

    def handle_events(self) -> None:
        super().handle_events()
        # h11 leaves IDLE only once a whole request head has been parsed; from
        # then on the request (or the WebSocket it upgraded to) owns the socket.
        if self._head_timer is not None and self.conn.their_state is not h11.IDLE:
            self._cancel_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()
