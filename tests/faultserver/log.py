"""Thread-safe request, connection and WebSocket logs of the fault server.

The server thread writes; test threads read. Every public reader takes the
lock and returns copies (records are frozen dataclasses), so a test can never
observe a half-updated structure.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace

__all__ = ["ConnectionRecord", "FaultLog", "RequestRecord", "WsEvent"]


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request as the server received it."""

    key: str  # "<scenario>-n<nonce>", or "" for requests outside /s/
    scenario: str  # scenario name without nonce
    attempt: int  # 1-based number of this request within its key
    method: str
    target: str  # raw request target exactly as received (latin-1 decoded)
    path: str  # target minus "/s/<key>" prefix and minus query, still percent-encoded
    query: str  # raw query string without "?"
    headers: tuple[tuple[str, str], ...]  # in wire order, original case
    conn_id: int
    time: float  # time.monotonic() when the request head was parsed
    local: tuple[str, int]  # (host, port) of the listener that took the request
    body_size: int = 0
    body: bytes = b""  # first BODY_KEEP bytes of the request body
    responded_at: float | None = None  # monotonic time the response head was sent

    def header(self, name: str, default: str | None = None) -> str | None:
        """First value of header ``name`` (case-insensitive)."""
        lname = name.lower()
        for k, v in self.headers:
            if k.lower() == lname:
                return v
        return default

    def header_values(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]


@dataclass(frozen=True)
class ConnectionRecord:
    """A TCP connection accepted by one of the listeners."""

    conn_id: int
    local: tuple[str, int]
    peer: tuple[str, int]
    opened_at: float
    closed_at: float | None = None
    keys: frozenset[str] = frozenset()  # scenario keys of requests seen on it
    aborted: bool = False  # closed with RST (SO_LINGER 0) by the server

    @property
    def is_open(self) -> bool:
        return self.closed_at is None


@dataclass(frozen=True)
class WsEvent:
    """A WebSocket event on a server-side session.

    ``kind`` is one of: ``open`` (101 sent), ``text``/``bytes`` (a message from
    the client), ``ping`` (client ping), ``close`` (close frame *received from the
    client*, with ``code``/``reason``), ``sent_close`` (close frame sent by the
    server), ``eof`` (TCP closed by the client without a close frame).
    """

    key: str
    conn_id: int
    kind: str
    time: float
    data: str | bytes | None = None
    code: int | None = None
    reason: str | None = None


BODY_KEEP = 64 * 1024


@dataclass
class _KeyState:
    attempts: int = 0
    flags: dict[str, object] = field(default_factory=dict)


class FaultLog:
    """All logs of one server. Lock-protected; safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[RequestRecord] = []
        self._conns: dict[int, ConnectionRecord] = {}
        self._ws: list[WsEvent] = []
        self._keys: dict[str, _KeyState] = {}
        self._errors: list[str] = []
        self._next_conn = 0
        self._open_now = 0
        self._open_peak = 0
        # A test may fork (CC-03) while the server thread holds the lock; the
        # child would then deadlock on its first log read. Give it a fresh lock.
        ref = weakref.ref(self)

        def reinit_lock() -> None:
            log = ref()
            if log is not None:
                log._lock = threading.Lock()

        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=reinit_lock)

    # -- writers (server thread) -------------------------------------------------

    def open_connection(self, local: tuple[str, int], peer: tuple[str, int]) -> int:
        with self._lock:
            self._next_conn += 1
            cid = self._next_conn
            self._conns[cid] = ConnectionRecord(cid, local, peer, time.monotonic())
            self._open_now += 1
            self._open_peak = max(self._open_peak, self._open_now)
            return cid

    def close_connection(self, conn_id: int, *, aborted: bool = False) -> None:
        with self._lock:
            rec = self._conns[conn_id]
            if rec.closed_at is None:
                self._conns[conn_id] = replace(
                    rec, closed_at=time.monotonic(), aborted=aborted or rec.aborted
                )
                self._open_now -= 1

    def next_attempt(self, key: str) -> int:
        """Count a new request for ``key`` and return its 1-based number."""
        with self._lock:
            state = self._keys.setdefault(key, _KeyState())
            state.attempts += 1
            return state.attempts

    def add_request(self, rec: RequestRecord) -> None:
        with self._lock:
            self._requests.append(rec)
            conn = self._conns[rec.conn_id]
            self._conns[rec.conn_id] = replace(conn, keys=conn.keys | {rec.key})

    def _replace_request(self, old: RequestRecord, new: RequestRecord) -> RequestRecord:
        with self._lock:
            # Search from the end: the record is almost always among the last.
            for i in range(len(self._requests) - 1, -1, -1):
                if self._requests[i] is old:
                    self._requests[i] = new
                    break
        return new

    def update_request_body(self, rec: RequestRecord, body: bytes, size: int) -> RequestRecord:
        """Attach the body once it has been read (the head is logged first)."""
        return self._replace_request(rec, replace(rec, body=body[:BODY_KEEP], body_size=size))

    def mark_responded(self, rec: RequestRecord) -> RequestRecord:
        if rec.responded_at is not None:
            return rec
        return self._replace_request(rec, replace(rec, responded_at=time.monotonic()))

    def add_ws(self, event: WsEvent) -> None:
        with self._lock:
            self._ws.append(event)

    def add_error(self, message: str) -> None:
        with self._lock:
            self._errors.append(message)

    def set_flag(self, key: str, name: str, value: object = True) -> object:
        """Set a per-key flag; returns the previous value (None if unset)."""
        with self._lock:
            state = self._keys.setdefault(key, _KeyState())
            old = state.flags.get(name)
            state.flags[name] = value
            return old

    def flag(self, key: str, name: str) -> object:
        with self._lock:
            state = self._keys.get(key)
            return None if state is None else state.flags.get(name)

    # -- readers (any thread) ----------------------------------------------------

    def requests(self, key: str | None = None) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self._requests if key is None or r.key == key]

    def connections(self, key: str | None = None) -> list[ConnectionRecord]:
        with self._lock:
            return [c for c in self._conns.values() if key is None or key in c.keys]

    def ws_events(self, key: str | None = None) -> list[WsEvent]:
        with self._lock:
            return [e for e in self._ws if key is None or e.key == key]

    def errors(self) -> list[str]:
        with self._lock:
            return list(self._errors)

    def open_count(self) -> int:
        with self._lock:
            return self._open_now

    def peak_open(self) -> int:
        with self._lock:
            return self._open_peak

    def flags(self, key: str) -> dict[str, object]:
        with self._lock:
            state = self._keys.get(key)
            return {} if state is None else dict(state.flags)

    def max_overlap(
        self, predicate: Callable[[ConnectionRecord], bool], *, since: float | None = None
    ) -> int:
        """Largest number of simultaneously open connections matching ``predicate``.

        ``since`` ignores everything before that monotonic time.
        """
        now = time.monotonic()
        start = float("-inf") if since is None else since
        points: list[tuple[float, int]] = []
        for c in self.connections():
            closed = c.closed_at if c.closed_at is not None else now
            if predicate(c) and closed >= start:
                # Closing sorts before opening at the same instant: a connection
                # replaced by another at the same tick is not counted twice.
                points.append((max(c.opened_at, start), 1))
                points.append((closed, -1))
        points.sort()
        best = cur = 0
        for _, delta in points:
            cur += delta
            best = max(best, cur)
        return best
