"""Loopback fault-injecting Wrenn server for the reliability suite.

Reference for RELIABILITY.md §2.1 / §3. The server speaks raw HTTP/1.1 (with
keep-alive), SSE and WebSocket, and misbehaves on request.

Usage
=====

::

    with FaultServer() as srv:                      # sync or inside async tests
        url = srv.url_for("flaky-503-2")            # http://127.0.0.1:P/s/flaky-503-2-n7
        client = WrennClient(base_url=url, ...)     # SDK appends /v1/capsules/...
        client.capsules.get("cl-abc")
        assert srv.count(url) == 3                  # logs accept a URL or a key
        assert [r.attempt for r in srv.requests(url)] == [1, 2, 3]

The server runs its own asyncio loop in a daemon thread, listens on
``127.0.0.1`` and ``127.0.0.2`` (same port when possible; ``port`` and
``other_port`` report both), and on exit cancels every handler, closes every
socket and joins the thread within ``stop_timeout``. ``async with`` works too
(under asyncio and trio); start and stop take milliseconds.

Constructor: ``FaultServer(host="127.0.0.1", other_host="127.0.0.2", port=0,
lifetime=3600.0, hang_limit=120.0, idle_timeout=120.0, stop_timeout=5.0)``.
``hang_limit`` bounds every "wait for the client" state (hang, hangbody,
sse-silent, wshang ...); ``lifetime`` stops the server by itself.

Fork (CC-03): a forked child can send requests to the parent's server (the
parent logs them); read the logs in the parent. The log lock is re-created in
the child, so a log read there cannot deadlock, but it sees a stale copy.

Selecting a scenario
====================

``url_for(name)`` returns ``http://127.0.0.1:PORT/s/<name>-n<nonce>``
(``url_for(name, origin="other")``: the same on 127.0.0.2). The path
segment ``<name>-n<nonce>`` is the *key*: each ``url_for`` call gets a fresh
nonce, so each key has its own request counter (``attempt`` 1, 2, 3 ...).
Requests outside ``/s/`` behave like ``ok`` under key ``""``. Unknown names
raise ``ScenarioError`` in ``url_for`` (and give a 500 ``unknown_scenario`` on
the wire, logged in ``errors()``).

Default responses (``ok``)
--------------------------
Realistic v0.1.5 JSON; ids in responses mirror ids in the path
(percent-decoded), so crosstalk is detectable.

====================================================  ==========================================
``GET /v1/capsules``                                  200, 3 capsules (running, running, paused)
``POST /v1/capsules``                                 201 capsule (``template`` from the body)
``GET /v1/capsules/stats`` / ``usage``                200 CapsuleStats / UsageResponse
``GET /v1/capsules/{id}``                             200 capsule with that id
``DELETE /v1/capsules/{id}``                          204
``POST /v1/capsules/{id}/pause`` / ``resume``         200 capsule, status paused / running
``POST /v1/capsules/{id}/ping``                       204
``POST /v1/capsules/{id}/exec``                       200 ExecResponse (202 if ``background``)
``GET /v1/capsules/{id}/metrics``                     200 CapsuleMetrics (``range`` from query)
``GET /v1/capsules/{id}/processes``                   200 ``{"processes": [...]}``
``DELETE /v1/capsules/{id}/processes/{sel}``          204
``POST .../files/read``                               200 octet-stream ``contents of <path>\\n``
``POST .../files/stream/read``                        200 chunked octet-stream (4 chunks)
``POST .../files/{write,stream/write,remove}``      204
``POST .../files/list`` / ``mkdir``                   200 ``{"entries": [3]}`` / ``{"entry": {}}``
``GET /v1/snapshots``                                 200, 3 templates (2 snapshot, 1 platform)
``POST /v1/snapshots``                                201 template (``name`` from the body)
``DELETE /v1/snapshots/{name}``                       204
``GET /v1/events/stream``                             SSE, like ``sse-ok``
WS ``.../exec/stream``, ``.../pty``,                  WebSocket, like ``wsok``
``.../processes/{sel}/stream``
``GET /health``                                       200 ``{"status":"ok",...}``
other routes                                          404 ``not_found`` envelope
====================================================  ==========================================

Errors use ``{"error":{"code":..,"message":..}}``: 400 invalid_request,
401 unauthorized, 403 forbidden, 404 not_found, 408 request_timeout,
409 invalid_state, 413 too_large, 422 invalid_request, 429 rate_limited,
500 internal_error, 502 agent_error, 503 host_unavailable, 504 gateway_timeout.
Every response carries ``X-Fault-Conn`` (connection id) and ``X-Fault-Attempt``.

Scenarios
---------
Basic
  ``ok``               Default responses above.
  ``echo``             Like ``ok``; capsule objects also carry
                       ``"echo": {"conn_id", "attempt", "target"}`` (CC-02/CC-03:
                       the capsule id mirrors the path id).

Status and retry signals
  ``status-<code>``    Always ``<code>`` with the Wrenn envelope (``>= 300``);
                       a 2xx code returns the default body with that status.
  ``flaky-<f>-<n>``    The first ``n`` attempts of the key fail with ``<f>``, then
                       ``ok``. ``<f>`` is a status code, ``reset``, ``drop``,
                       ``hang`` or ``truncated`` (``flaky-429-1-ra1``).
  ``mix``              Request ``i`` (1-based attempt) of the key:
                       ``i % 20 == 7`` -> 503, ``i % 20 == 13`` -> mid-body reset,
                       else ``ok`` (5 % + 5 %, deterministic).
  ``mixhang``          ``mix`` plus ``i % 100 == 42`` -> ``hang`` (1 %).

Modifiers, appended to ``status``/``flaky``/``err*``/``mix``/``ws<code>``; they
add headers to the *failure* responses only:
  ``-ra<secs>``        ``Retry-After: <secs>`` (may be negative or fractional:
                       ``status-503-ra-10``, ``-ra1.5``).
  ``-radate<secs>``    ``Retry-After`` as an HTTP-date. For ``secs > 0`` the
                       response is held (< 1 s) until 0.5-0.8 s into a wall-clock
                       second and names ``next whole second + secs``, so the wait a
                       client derives is in ``(secs, secs + 0.5]``; measure gaps from
                       ``RequestRecord.responded_at``. Negative: a past date.
  ``-rams<ms>``        ``retry-after-ms: <ms>``.
  ``-rawra<hex>``      ``Retry-After`` with any raw value; build it with
                       ``rawra("abc")``, ``rawra("")``, ``rawra("99999999999999999999")``.
  ``-xsrtrue`` / ``-xsrfalse``  ``x-should-retry: true|false``.
  ``-hdr<hex>``        Any header; build with ``hdr("Name", "value")``.
  ``-pad``             Only for ``html502``: pad the page to ~60 KB.

Connection faults
  ``reset``            Headers plus half of the body (Content-Length is the full
                       size), then TCP RST (SO_LINGER 0).
  ``resetafter-<KiB>`` Read that much of the *request* body, then RST without a
                       response (a reset during an upload).
  ``drop``             Read the request, close (FIN) without any response.
  ``truncated``        ``Content-Length: 500``, 30 bytes of body, close.
  ``hang``             Read the request, never answer; ends when the client
                       disconnects, the server stops, or after ``hang_limit``.
  ``hangfirst-<n>``    First ``n`` attempts ``hang``, then ``ok``.
  ``hangbody``         Full headers, then silence (like ``hang``).
  ``drip``             ``Content-Length: 120``, 1 byte every 0.5 s (60 s max).
  ``driphead``         The response head itself, 1 byte every 0.5 s (60 s max).
  ``dripfor-<s>``      The ``ok`` answer, complete and valid, spread evenly over
                       ``s`` seconds (10 pieces): slow, yet never silent for long.
  ``slow-<s>``         Any request: answer ``ok`` after ``s`` seconds.
  ``slowdelete-<s>``   First DELETE of the key performs the delete (flag
                       ``deleted``) and answers 204 after ``s`` seconds; every
                       later request of the key gets 404. Other methods ``ok``.
  ``slowpost-<s>``     POST answers ``ok`` after ``s`` s (flag ``posted`` counts
                       them); other methods ``ok`` at once.

Bad bodies (success status unless noted)
  ``badjson``          200, JSON cut in the middle (Content-Length is correct).
  ``html200``          200 ``text/html`` captive-portal page.
  ``html502``          502 nginx HTML page; ``html502-pad`` pads it to ~60 KB.
  ``empty200``         200 ``application/json`` with an empty body.
  ``null200``          200 ``null``.
  ``list200``          ``[<default object>]`` where an object is expected.
  ``obj200``           ``{"data": <default list>}`` where a list is expected
                       (object routes unchanged).
  ``textjson``         Default JSON served as ``text/plain; charset=utf-8``.
  ``unknownstatus``    Capsules get status ``migrating`` plus unknown fields;
                       the list route returns 3: migrating, pausing, running.
  ``wrongtype``        ``"vcpus": "two"`` (list: in the second capsule).
  ``huge-<MB>``        A valid JSON body of exactly ``MB`` MiB, streamed in
                       64 KiB chunks (never built in memory).

Bad error bodies (status defaults to 500; ``errstr-404`` etc.)
  ``errlist``          ``["x"]``.
  ``errstr``           ``{"error":"internal failure"}``.
  ``errempty``         ``{}``.
  ``errblank``         Empty body (``application/json``).
  ``errhtml``          nginx HTML page with that status.
  ``echo400``          400 ``text/html`` page echoing every request header (a
                       proxy page that leaks ``X-API-Key``).

Redirects
  ``redirect``         307 to the same target on ``127.0.0.2``; there every request
                       of the key is answered ``ok`` (so a followed redirect shows
                       up in the log with ``local[0] == "127.0.0.2"``).
  ``redirect301``      301 to the same origin and target plus ``redirected=1`` in the
                       query; requests carrying that are answered ``ok``.

SSE (on ``GET /v1/events/stream``; other routes behave like ``ok``)
  Events are ``event: <kind>`` + ``data: <SSEEvent JSON>`` frames, chunked.
  ``sse-ok``           3 events (capsule.create, capsule.pause, capsule.resume), end.
  ``sse-keepalive-<s>`` ``:keepalive`` comment every 1 s, ``s`` times, then end.
  ``sse-silent``       1 event, then silence until the client leaves.
  ``sse-bad``          1 event, a frame whose ``data:`` is broken JSON, 1 event, end.
  ``sse-drop``         2 events with ``id: 1`` / ``id: 2``, then TCP RST.
  ``sse-newevent``     Event ``capsule.migrated`` with extra fields, then
                       capsule.create, end.
  ``sse-idretry``      ``retry: 1500`` plus ``id: evt-1``/``evt-2`` on 2 events, end.

WebSocket (upgrade on the exec/stream, pty or processes/{sel}/stream routes)
  Exec/process frames: ``start{pid}``, ``stdout{data}``, ``stderr{data}``,
  ``exit{exit_code}``. PTY frames: ``started{tag,pid}``, ``output{data: b64}``,
  ``exit{exit_code}``. On exec and pty the server first waits (<= 5 s) for the
  client's start message; on processes/stream it does not.
  ``wsok``             start, stdout, stderr, exit 0, close 1000, wait for the
                       client's close reply.
  ``wsstream``         start, then stdout every 0.1 s until the client closes
                       (<= 60 s); for ST-05 early-close tests.
  ``wstrunc``          start, stdout, then TCP FIN without a close frame.
  ``wsreset``          start, stdout, then TCP RST.
  ``wshang``           101, then silence: pings are not answered, the client's
                       close frame is logged but not answered.
  ``wsclose``          start, stdout, close 1011 without exit.
  ``wsbadjson``        start, then a non-JSON text frame, then wait for the
                       client to close (answering its close frame).
  ``ws<code>``         Upgrade answered with ``<code>`` and the JSON envelope.
  ``ws502html``        Upgrade answered 502 with an nginx HTML page.
  Client frames, pings and close frames (code, reason, time) are logged in
  ``ws_events()``; ``ws_close_frames(key)`` filters the close frames.

Listener helpers (connect-phase faults cannot be chosen by path)
  ``refusing_url(ms, scenario="ok")``  A URL on a new port that refuses
      connections (bound, not listening) for ``ms`` milliseconds and then serves
      normally; ``ms=None`` refuses forever.
  ``backlog_full_url(scenario="ok")``  A URL on a ``listen(0)`` socket whose
      backlog is filled by filler sockets: connects time out (SYNs dropped).

Logs
====
``requests(key)`` -> ``RequestRecord`` (key, scenario, attempt, method, raw
``target``, ``path``, ``query``, ``headers``, ``conn_id``, monotonic ``time``,
``local`` listener address, ``body_size``, ``body`` (first 64 KiB),
``responded_at`` (when the response head went out, or None));
``count(key)``; ``connections(key)`` -> ``ConnectionRecord`` (opened_at,
closed_at, keys, aborted); ``connections_seen(key)``; ``open_connections(key)``;
``max_concurrent_connections(key, since=None)``; ``ws_events(key)`` ->
``WsEvent`` (kind open/text/bytes/ping/close/sent_close/eof, data, code,
reason, time); ``ws_close_frames(key)``; ``flags(key)``; ``is_running``;
``errors()`` (handler crashes: should stay empty); ``wait_until(pred)`` /
``await_until(pred)`` to poll. ``key`` may be a key, a URL from ``url_for``, or
``None`` for everything. Times use ``time.monotonic()`` like the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import threading
import time
import traceback
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import unquote

import anyio

from . import payloads as P
from .log import BODY_KEEP, ConnectionRecord, FaultLog, RequestRecord, WsEvent
from .scenarios import Scenario, ScenarioError, parse_scenario, split_key
from .wire import (
    MAX_HEAD,
    RawRequest,
    WireError,
    abort_with_rst,
    read_body,
    read_head,
    reason_phrase,
    response_head,
)
from .ws import WsSession, accept_key

__all__ = ["FaultServer"]

_MAX_REQUESTS_PER_CONN = 100_000
_DRIP_INTERVAL = 0.5
_DRIP_BYTES = 120  # 120 x 0.5 s = 60 s
_HUGE_CHUNK = 64 * 1024
_HTML502_PAD = 60 * 1024
_WS_START_WAIT = 5.0
_WS_CLOSE_WAIT = 2.0
_WS_STREAM_TICKS = 600  # 600 x 0.1 s = 60 s


# --------------------------------------------------------------------------------------
# Per-connection and per-request state
# --------------------------------------------------------------------------------------


@dataclass(eq=False)  # identity semantics: kept in a set
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    conn_id: int
    local: tuple[str, int]
    aborted: bool = False
    closed: bool = False

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        # The write buffer high-water mark is 0, so drain() returns only when
        # the bytes are in the kernel: an RST that follows cannot discard them,
        # and a huge body never piles up in user space.
        await self.writer.drain()

    def rst(self) -> None:
        if not self.closed:
            self.aborted = self.closed = True
            abort_with_rst(self.writer)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.close()

    async def wait_disconnect(self, limit: float) -> None:
        """Return when the client closes (EOF or error) or after ``limit`` s."""
        deadline = time.monotonic() + limit
        # Bounded by the deadline; data the client sends meanwhile is discarded.
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                data = await asyncio.wait_for(self.reader.read(65536), remaining)
            except (asyncio.TimeoutError, ConnectionError):
                return
            if not data:
                return


@dataclass
class _Resp:
    """A complete (non-streamed) response."""

    status: int
    body: bytes = b""
    ctype: str | None = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    value: Any = None  # the JSON value behind ``body``, for body-mangling scenarios
    chunks: list[bytes] | None = None  # chunked transfer instead of Content-Length


def _json(status: int, value: Any, headers: list[tuple[str, str]] | None = None) -> _Resp:
    return _Resp(status, P.dumps(value), headers=headers or [], value=value)


def _error(status: int, headers: list[tuple[str, str]] | None = None) -> _Resp:
    if status in (204, 304) or 100 <= status < 200:
        return _Resp(status, b"", None, headers or [])
    return _json(status, P.error_envelope(status), headers)


@dataclass
class _Exchange:
    """One request being answered."""

    server: FaultServer
    conn: _Conn
    head: RawRequest
    rec: RequestRecord
    scenario: Scenario
    segs: list[str]
    query: str
    body: bytes = b""

    @property
    def key(self) -> str:
        return self.rec.key

    @property
    def attempt(self) -> int:
        return self.rec.attempt

    def query_param(self, name: str) -> str | None:
        for part in self.query.split("&"):
            k, _, v = part.partition("=")
            if unquote(k) == name:
                return unquote(v)
        return None

    def json_body(self) -> dict[str, Any]:
        try:
            value = json.loads(self.body or b"{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def base_headers(self, close: bool) -> list[tuple[str, str]]:
        headers = [("X-Fault-Conn", str(self.conn.conn_id)), ("X-Fault-Attempt", str(self.attempt))]
        if close:
            headers.append(("Connection", "close"))
        return headers

    def mark_responded(self) -> None:
        """Log the time the response head goes out (for gap measurements)."""
        self.rec = self.server._log.mark_responded(self.rec)

    async def send(self, resp: _Resp, *, close: bool = False) -> bool:
        """Write ``resp``; return True if the connection stays usable."""
        self.mark_responded()
        close = close or self.head.wants_close
        headers = self.base_headers(close)
        if resp.ctype is not None:
            headers.append(("Content-Type", resp.ctype))
        headers.extend(resp.headers)
        if resp.chunks is not None:
            headers.append(("Transfer-Encoding", "chunked"))
            await self.conn.write(response_head(resp.status, headers))
            for chunk in resp.chunks:
                await self.conn.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await self.conn.write(b"0\r\n\r\n")
        else:
            no_body = resp.status in (204, 304) or 100 <= resp.status < 200
            if not no_body:
                headers.append(("Content-Length", str(len(resp.body))))
            # A HEAD response announces the length but carries no body.
            send_body = not no_body and self.head.method != "HEAD"
            await self.conn.write(
                response_head(resp.status, headers) + (resp.body if send_body else b"")
            )
        return not close

    async def send_head(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.mark_responded()
        await self.conn.write(response_head(status, self.base_headers(False) + headers))


# --------------------------------------------------------------------------------------
# Default routes
# --------------------------------------------------------------------------------------


def _ws_route(segs: list[str]) -> str | None:
    """'exec', 'pty' or 'proc' for the three WebSocket routes, else None."""
    if len(segs) >= 4 and segs[:2] == ["v1", "capsules"]:
        tail = tuple(segs[3:])
        if tail == ("exec", "stream"):
            return "exec"
        if tail == ("pty",):
            return "pty"
        if len(tail) == 3 and tail[0] == "processes" and tail[2] == "stream":
            return "proc"
    return None


def _is_events_route(segs: list[str]) -> bool:
    return segs == ["v1", "events", "stream"]


def _default_response(ex: _Exchange, *, echo: bool = False) -> _Resp:
    """The well-behaved answer for this route (``ok``)."""
    method, segs = ex.head.method, ex.segs
    extra: dict[str, Any] = {}
    if echo:
        extra["echo"] = {"conn_id": ex.conn.conn_id, "attempt": ex.attempt, "target": ex.rec.target}

    if segs == ["health"] and method == "GET":
        return _json(200, {"status": "ok", "version": "0.1.5"})
    if segs[:2] == ["v1", "capsules"]:
        return _capsule_routes(ex, method, segs[2:], extra)
    if segs[:2] == ["v1", "snapshots"]:
        rest = segs[2:]
        if not rest and method == "GET":
            return _json(200, P.template_list())
        if not rest and method == "POST":
            name = str(ex.json_body().get("name") or "template-0a1b2c3d")
            return _json(201, P.template(name))
        if len(rest) == 1 and method == "DELETE":
            return _Resp(204, ctype=None)
    return _json(404, {"error": {"code": "not_found", "message": "route not found"}})


def _capsule_routes(ex: _Exchange, method: str, rest: list[str], extra: dict[str, Any]) -> _Resp:
    if not rest:
        if method == "GET":
            return _json(200, P.capsule_list())
        if method == "POST":
            template = str(ex.json_body().get("template") or "minimal")
            cid = P.capsule_id(10_000 + ex.attempt)
            return _json(201, P.capsule(cid, "running", template=template, **extra))
    elif rest == ["stats"] and method == "GET":
        return _json(200, P.stats(ex.query_param("range") or "1h"))
    elif rest == ["usage"] and method == "GET":
        return _json(200, P.usage())
    else:
        cid = unquote(rest[0])
        return _capsule_item_routes(ex, method, cid, rest[1:], extra)
    return _error(405)


def _capsule_item_routes(
    ex: _Exchange, method: str, cid: str, sub: list[str], extra: dict[str, Any]
) -> _Resp:
    if not sub:
        if method == "GET":
            return _json(200, P.capsule(cid, **extra))
        if method == "DELETE":
            return _Resp(204, ctype=None)
        return _error(405)
    action = sub[0]
    if len(sub) == 1 and method == "POST":
        if action == "pause":
            return _json(200, P.capsule(cid, "paused", **extra))
        if action == "resume":
            return _json(200, P.capsule(cid, "running", **extra))
        if action == "ping":
            return _Resp(204, ctype=None)
        if action == "exec":
            status, value = P.exec_result(cid, ex.json_body())
            return _json(status, value)
    if len(sub) == 1 and method == "GET":
        if action == "metrics":
            return _json(200, P.metrics(cid, ex.query_param("range") or "10m"))
        if action == "processes":
            return _json(200, P.processes())
    if action == "processes" and len(sub) == 2 and method == "DELETE":
        return _Resp(204, ctype=None)
    if action == "files" and method == "POST":
        return _file_routes(ex, sub[1:])
    if _ws_route(["v1", "capsules", cid, *sub]) is not None:
        return _json(400, P.error_envelope(400, "websocket upgrade required"))
    return _json(404, {"error": {"code": "not_found", "message": "route not found"}})


def _file_routes(ex: _Exchange, op: list[str]) -> _Resp:
    path = str(ex.json_body().get("path") or "/")
    if op in (["write"], ["remove"], ["stream", "write"]):
        return _Resp(204, ctype=None)
    if op == ["read"]:
        return _Resp(200, P.file_content(path), "application/octet-stream")
    if op == ["stream", "read"]:
        # Four chunks so a streaming reader sees several reads.
        chunks = [P.file_content(path)] * 4
        return _Resp(200, b"", "application/octet-stream", chunks=chunks)
    if op == ["list"]:
        return _json(200, P.dir_listing(path))
    if op == ["mkdir"]:
        return _json(200, {"entry": P.file_entry(path, "directory")})
    return _json(404, {"error": {"code": "not_found", "message": "route not found"}})


# --------------------------------------------------------------------------------------
# Body-mangling scenarios: they transform the default response
# --------------------------------------------------------------------------------------


def _is_capsule(value: Any) -> bool:
    return isinstance(value, dict) and {"id", "status", "vcpus"} <= value.keys()


def _mangle(kind: str, ex: _Exchange, resp: _Resp) -> _Resp:
    value = resp.value
    if kind == "badjson":
        text = resp.body or P.dumps(P.capsule("cl-x"))
        return _Resp(200, text[: max(1, len(text) // 2)])
    if kind == "html200":
        return _Resp(200, P.captive_portal_page(), "text/html; charset=utf-8")
    if kind == "empty200":
        return _Resp(200, b"")
    if kind == "null200":
        return _json(200, None)
    if kind == "list200":
        return _json(200, value if isinstance(value, list) else [value])
    if kind == "obj200":
        return _json(resp.status, {"data": value}) if isinstance(value, list) else resp
    if kind == "textjson":
        return _Resp(resp.status, resp.body, "text/plain; charset=utf-8", value=value)
    if kind == "unknownstatus":
        if isinstance(value, list) and value and _is_capsule(value[0]):
            ids = [c["id"] for c in value]
            statuses = ("pausing", "running")
            new = [P.unknown_capsule(ids[0])] + [
                P.capsule(i, s) for i, s in zip(ids[1:], statuses, strict=False)
            ]
            return _json(resp.status, new)
        if _is_capsule(value):
            echo = {"echo": value["echo"]} if "echo" in value else {}
            return _json(resp.status, {**P.unknown_capsule(value["id"]), **echo})
        return resp
    if kind == "wrongtype":
        if isinstance(value, list) and len(value) > 1 and _is_capsule(value[1]):
            return _json(resp.status, [value[0], {**value[1], "vcpus": "two"}, *value[2:]])
        if _is_capsule(value):
            return _json(resp.status, {**value, "vcpus": "two"})
        return resp
    raise AssertionError(kind)


_MANGLERS = frozenset(
    {
        "badjson",
        "html200",
        "empty200",
        "null200",
        "list200",
        "obj200",
        "textjson",
        "unknownstatus",
        "wrongtype",
    }
)


# --------------------------------------------------------------------------------------
# Behaviours: one coroutine per scenario kind. Each returns True to keep the
# connection for the next request, False to end it.
# --------------------------------------------------------------------------------------


def _effective_kind(ex: _Exchange) -> tuple[str, str | None]:
    """Resolve attempt-dependent scenarios to what this attempt does."""
    scn, i = ex.scenario, ex.attempt
    if scn.kind == "flaky":
        assert scn.n is not None and scn.arg is not None
        if i > scn.n:
            return "ok", None
        return ("status", scn.arg) if scn.arg.isdigit() else (scn.arg, None)
    if scn.kind == "hangfirst":
        return ("hang", None) if i <= int(scn.arg or 0) else ("ok", None)
    if scn.kind in ("mix", "mixhang"):
        if scn.kind == "mixhang" and i % 100 == 42:
            return "hang", None
        if i % 20 == 7:
            return "status", "503"
        if i % 20 == 13:
            return "reset", None
        return "ok", None
    if scn.kind == "redirect" and ex.conn.local[0] == ex.server.other_host:
        return "ok", None
    if scn.kind == "redirect301" and ex.query_param("redirected") == "1":
        return "ok", None
    return scn.kind, scn.arg


async def _failure_headers(ex: _Exchange) -> list[tuple[str, str]]:
    """Modifier headers; waits (< 1 s) first when an HTTP-date must be precise."""
    # Bounded: a sleep that overshoots the window (a busy machine) aims again.
    for _ in range(5):
        delay = ex.scenario.date_alignment_delay(time.time())
        if delay <= 0:
            break
        await asyncio.sleep(delay)
    return ex.scenario.failure_headers(time.time())


async def _b_ok(ex: _Exchange) -> bool:
    return await ex.send(_default_response(ex, echo=ex.scenario.kind == "echo"))


async def _b_status(ex: _Exchange, code: int) -> bool:
    if 200 <= code < 300:
        resp = _default_response(ex)
        resp.status = code
        if code == 204:
            resp.body, resp.ctype, resp.chunks = b"", None, None
        return await ex.send(resp)
    return await ex.send(_error(code, await _failure_headers(ex)))


async def _b_error_body(ex: _Exchange, kind: str) -> bool:
    status = ex.scenario.status or 500
    headers = await _failure_headers(ex)
    bodies = {
        "errlist": _json(status, ["x"], headers),
        "errstr": _json(status, {"error": "internal failure"}, headers),
        "errempty": _json(status, {}, headers),
        "errblank": _Resp(status, b"", "application/json", headers),
        "errhtml": _Resp(status, P.nginx_page(status, reason_phrase(status)), "text/html", headers),
    }
    return await ex.send(bodies[kind])


async def _b_html502(ex: _Exchange) -> bool:
    page = P.nginx_page(502, "Bad Gateway", pad_to=_HTML502_PAD if ex.scenario.pad else 0)
    return await ex.send(_Resp(502, page, "text/html", await _failure_headers(ex)))


async def _b_echo400(ex: _Exchange) -> bool:
    page = P.header_echo_page(list(ex.head.headers))
    return await ex.send(_Resp(400, page, "text/html"))


async def _b_reset(ex: _Exchange) -> bool:
    body = _default_response(ex).body
    if len(body) < 60:
        body = P.dumps(P.capsule(P.capsule_id(1)))
    head = response_head(
        200,
        [
            *ex.base_headers(False),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
        ],
    )
    ex.mark_responded()
    await ex.conn.write(head + body[: len(body) // 2])
    # Give the client a moment to read the headers, so the error happens while
    # it reads the body (a mid-body reset), not before the status line.
    await asyncio.sleep(0.05)
    ex.conn.rst()
    return False


async def _b_drop(ex: _Exchange) -> bool:
    ex.conn.close()
    return False


async def _b_truncated(ex: _Exchange) -> bool:
    head = response_head(
        200,
        [*ex.base_headers(False), ("Content-Type", "application/json"), ("Content-Length", "500")],
    )
    body = b'{"id":"cl-truncated","status":"running","template":'
    ex.mark_responded()
    await ex.conn.write(head + body[:30])
    ex.conn.close()
    return False


async def _b_hang(ex: _Exchange) -> bool:
    await ex.conn.wait_disconnect(ex.server.hang_limit)
    return False


async def _b_hangbody(ex: _Exchange) -> bool:
    await ex.send_head(200, [("Content-Type", "application/json"), ("Content-Length", "300")])
    await ex.conn.wait_disconnect(ex.server.hang_limit)
    return False


async def _until_client_leaves(ex: _Exchange, work: Coroutine[Any, Any, None]) -> bool:
    """Run ``work`` while watching for the client to disconnect.

    Returns True if ``work`` finished, False if the client left first (then
    ``work`` is cancelled). Streaming writers use this so a closed client is
    noticed at once instead of at the next write.
    """
    job = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(ex.conn.wait_disconnect(ex.server.hang_limit))
    try:
        await asyncio.wait({job, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (job, watcher):
            task.cancel()
        results = await asyncio.gather(job, watcher, return_exceptions=True)
    error = results[0]
    if isinstance(error, BaseException) and not isinstance(error, asyncio.CancelledError):
        raise error
    return job.done() and not job.cancelled()


async def _b_drip(ex: _Exchange) -> bool:
    body = b'{"pad":"' + b"x" * (_DRIP_BYTES - 11) + b'"}\n'
    assert len(body) == _DRIP_BYTES
    await ex.send_head(
        200, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )

    async def drip() -> None:
        for i in range(len(body)):
            await ex.conn.write(body[i : i + 1])
            await asyncio.sleep(_DRIP_INTERVAL)

    finished = await _until_client_leaves(ex, drip())
    return finished and not ex.head.wants_close


async def _b_driphead(ex: _Exchange) -> bool:
    ex.mark_responded()
    head = response_head(200, [*ex.base_headers(False), ("Content-Length", "2")])
    head = head[:_DRIP_BYTES]  # bounded: 60 s at most

    async def drip() -> None:
        for i in range(len(head)):
            await ex.conn.write(head[i : i + 1])
            await asyncio.sleep(_DRIP_INTERVAL)

    await _until_client_leaves(ex, drip())
    return False  # the head is cut (or the client left): the connection is spent


async def _b_dripfor(ex: _Exchange) -> bool:
    resp = _default_response(ex)
    data = (
        response_head(
            resp.status,
            [
                *ex.base_headers(False),
                ("Content-Type", resp.ctype or "application/json"),
                ("Content-Length", str(len(resp.body))),
            ],
        )
        + resp.body
    )
    ex.mark_responded()
    pieces = 10
    step = -(-len(data) // pieces)
    pause = ex.scenario.seconds / pieces

    async def drip() -> None:
        for start in range(0, len(data), step):
            await asyncio.sleep(pause)
            await ex.conn.write(data[start : start + step])

    finished = await _until_client_leaves(ex, drip())
    return finished and not ex.head.wants_close


async def _b_huge(ex: _Exchange) -> bool:
    size = int(ex.scenario.arg or 0) * 1024 * 1024
    is_list = isinstance(_default_response(ex).value, list)
    prefix = (b"[" if is_list else b"") + b'{"id":"cl-huge","status":"running","pad":"'
    suffix = b'"}' + (b"]" if is_list else b"")
    pad = size - len(prefix) - len(suffix)
    if pad < 0:
        raise ValueError("huge body must be at least 1 MiB")
    await ex.send_head(200, [("Content-Type", "application/json"), ("Content-Length", str(size))])

    async def stream() -> None:
        await ex.conn.write(prefix)
        block = b"x" * _HUGE_CHUNK
        remaining = pad
        # Bounded by size / chunk; drain() in write() is the flow control.
        while remaining > 0:
            n = min(remaining, _HUGE_CHUNK)
            await ex.conn.write(block[:n])
            remaining -= n
        await ex.conn.write(suffix)

    return await _until_client_leaves(ex, stream())


async def _b_slow(ex: _Exchange, seconds: float) -> bool:
    await asyncio.sleep(seconds)
    return await _b_ok(ex)


async def _b_slowdelete(ex: _Exchange) -> bool:
    log = ex.server._log
    if log.flag(ex.key, "deleted") is not None:
        return await ex.send(_error(404))
    if ex.head.method != "DELETE":
        return await _b_ok(ex)
    # The delete takes effect now; only the answer is late.
    log.set_flag(ex.key, "deleted", time.monotonic())
    await asyncio.sleep(ex.scenario.seconds)
    return await ex.send(_Resp(204, ctype=None))


async def _b_slowpost(ex: _Exchange) -> bool:
    if ex.head.method != "POST":
        return await _b_ok(ex)
    log = ex.server._log
    posted = log.flag(ex.key, "posted")
    log.set_flag(ex.key, "posted", (posted if isinstance(posted, int) else 0) + 1)
    await asyncio.sleep(ex.scenario.seconds)
    return await _b_ok(ex)


async def _b_redirect(ex: _Exchange, kind: str) -> bool:
    if kind == "redirect":
        location = f"http://{ex.server.other_host}:{ex.server.other_port}{ex.rec.target}"
        status = 307
    else:
        sep = "&" if "?" in ex.rec.target else "?"
        location = f"http://{ex.server.host}:{ex.server.port}{ex.rec.target}{sep}redirected=1"
        status = 301
    return await ex.send(_Resp(status, b"", None, [("Location", location)]))


# -- SSE ------------------------------------------------------------------------------


async def _b_sse(ex: _Exchange, kind: str) -> bool:
    await ex.send_head(
        200,
        [
            ("Content-Type", "text/event-stream"),
            ("Cache-Control", "no-cache"),
            ("Transfer-Encoding", "chunked"),
        ],
    )

    async def chunk(data: bytes) -> None:
        await ex.conn.write(b"%x\r\n%s\r\n" % (len(data), data))

    async def end() -> None:
        await ex.conn.write(b"0\r\n\r\n")

    def ev(name: str, n: int, **kw: Any) -> bytes:
        return P.sse_json_frame(P.sse_event(name, n), **kw)

    if kind in ("ok", "echo", "sse-ok"):
        for n, name in enumerate(("capsule.create", "capsule.pause", "capsule.resume"), 1):
            await chunk(ev(name, n))
    elif kind == "sse-keepalive":

        async def keepalive() -> None:
            for _ in range(int(ex.scenario.arg or 0)):
                await asyncio.sleep(1.0)
                await chunk(b":keepalive\n\n")

        if not await _until_client_leaves(ex, keepalive()):
            return False
    elif kind == "sse-silent":
        await chunk(ev("capsule.create", 1))
        await ex.conn.wait_disconnect(ex.server.hang_limit)
        return False
    elif kind == "sse-bad":
        await chunk(ev("capsule.create", 1))
        await chunk(
            P.sse_frame('{"event":"capsule.pause","resource":{"id":', event="capsule.pause")
        )
        await chunk(ev("capsule.resume", 3))
    elif kind == "sse-drop":
        await chunk(ev("capsule.create", 1, id_="1"))
        await chunk(ev("capsule.pause", 2, id_="2"))
        await asyncio.sleep(0.05)  # let the client consume both events first
        ex.conn.rst()
        return False
    elif kind == "sse-newevent":
        unknown = P.sse_event(
            "capsule.migrated", 1, migration={"from": "host-a", "to": "host-b"}, priority=3
        )
        await chunk(P.sse_json_frame(unknown))
        await chunk(ev("capsule.create", 2))
    elif kind == "sse-idretry":
        await chunk(ev("capsule.create", 1, id_="evt-1", retry=1500))
        await chunk(ev("capsule.pause", 2, id_="evt-2"))
    await end()
    return not ex.head.wants_close


# -- WebSocket -------------------------------------------------------------------------


async def _b_websocket(ex: _Exchange, kind: str) -> bool:
    client_key = ex.head.header("sec-websocket-key")
    if not client_key:
        await ex.send(_json(400, P.error_envelope(400, "missing Sec-WebSocket-Key")), close=True)
        return False
    await ex.conn.write(
        response_head(
            101,
            [
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", accept_key(client_key)),
            ],
        )
    )
    ex.mark_responded()
    log = ex.server._log
    log.add_ws(WsEvent(ex.key, ex.conn.conn_id, "open", time.monotonic()))
    ws = WsSession(
        ex.conn.reader, ex.conn.writer, log, ex.key, ex.conn.conn_id, answer_pings=kind != "wshang"
    )
    route = _ws_route(ex.segs) or "exec"
    if kind == "wshang":
        await ws.drain_until_closed(ex.server.hang_limit)
        return False
    if route != "proc":
        await ws.receive(_WS_START_WAIT)  # the client's start message
        if not ws.open:
            return False
    pty = route == "pty"
    start = (
        {"type": "started", "tag": "pty-0a1b2c3d", "pid": 4242}
        if pty
        else {"type": "start", "pid": 4242}
    )

    def out(text: str, stream: str = "stdout") -> dict[str, Any]:
        return P.pty_output(text) if pty else {"type": stream, "data": text}

    await ws.send_json(start)
    if kind in ("ok", "echo", "wsok"):
        await ws.send_json(out("hello\n"))
        if not pty:  # a PTY has a single output stream
            await ws.send_json(out("warning\n", "stderr"))
        await ws.send_json({"type": "exit", "exit_code": 0})
        await ws.send_close(1000)
    elif kind == "wsstream":
        for i in range(_WS_STREAM_TICKS):
            await ws.send_json(out(f"tick {i}\n"))
            await ws.receive(0.1)  # doubles as the tick sleep; notices a close
            if not ws.open:
                break
    elif kind in ("wstrunc", "wsreset"):
        await ws.send_json(out("hello\n"))
        await asyncio.sleep(0.05)
        if kind == "wsreset":
            ex.conn.rst()
        else:
            ex.conn.close()
        return False
    elif kind == "wsclose":
        await ws.send_json(out("hello\n"))
        await ws.send_close(1011, "internal error")
    elif kind == "wsbadjson":
        await ws.send_text("this is not json {")
    await ws.drain_until_closed(_WS_CLOSE_WAIT if kind != "wsbadjson" else ex.server.hang_limit)
    return False


async def _b_ws_upgrade_failure(ex: _Exchange, kind: str) -> bool:
    if kind == "ws502html":
        return await ex.send(_Resp(502, P.nginx_page(502, "Bad Gateway"), "text/html"), close=True)
    return await ex.send(_error(ex.scenario.status or 500, await _failure_headers(ex)), close=True)


_WS_SESSION_KINDS = frozenset(
    {"ok", "echo", "wsok", "wsstream", "wstrunc", "wsreset", "wshang", "wsclose", "wsbadjson"}
)
_SSE_KINDS = frozenset(
    {"sse-ok", "sse-keepalive", "sse-silent", "sse-bad", "sse-drop", "sse-newevent", "sse-idretry"}
)


async def _dispatch(ex: _Exchange) -> bool:
    kind, arg = _effective_kind(ex)
    if kind in ("ws502html", "wsstatus"):
        return await _b_ws_upgrade_failure(ex, kind)
    if ex.head.is_websocket and kind in _WS_SESSION_KINDS:
        return await _b_websocket(ex, kind)
    if kind.startswith("ws"):
        kind = "ok"  # a WS scenario on a plain request: behave normally
    if (
        _is_events_route(ex.segs)
        and ex.head.method == "GET"
        and kind in _SSE_KINDS | {"ok", "echo"}
    ):
        return await _b_sse(ex, kind)
    if kind in _SSE_KINDS:
        kind = "ok"

    simple: dict[str, Callable[[_Exchange], Awaitable[bool]]] = {
        "ok": _b_ok,
        "echo": _b_ok,
        "reset": _b_reset,
        "drop": _b_drop,
        "truncated": _b_truncated,
        "hang": _b_hang,
        "hangbody": _b_hangbody,
        "drip": _b_drip,
        "driphead": _b_driphead,
        "huge": _b_huge,
        "slowdelete": _b_slowdelete,
        "slowpost": _b_slowpost,
        "html502": _b_html502,
        "echo400": _b_echo400,
    }
    if kind in simple:
        return await simple[kind](ex)
    if kind == "status":
        return await _b_status(ex, int(arg or 500))
    if kind == "slow":
        return await _b_slow(ex, ex.scenario.seconds)
    if kind == "dripfor":
        return await _b_dripfor(ex)
    if kind in ("redirect", "redirect301"):
        return await _b_redirect(ex, kind)
    if kind in ("errlist", "errstr", "errempty", "errblank", "errhtml"):
        return await _b_error_body(ex, kind)
    if kind in _MANGLERS:
        return await ex.send(_mangle(kind, ex, _default_response(ex)))
    raise AssertionError(f"scenario kind {kind!r} has no behaviour")


def _split_target(target: str) -> tuple[str, list[str], str]:
    """Split a raw target into (key, route segments, query).

    Absolute-form targets (a client using the server as an HTTP proxy) are
    routed by their path.
    """
    path, _, query = target.partition("?")
    path = path.partition("#")[0]
    if "://" in path:
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    key = ""
    if path.startswith("/s/"):
        key, _, path = path[3:].partition("/")
    segs = [s for s in path.split("/") if s != ""]
    return key, segs, query


# --------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------


class FaultServer:
    """Loopback fault-injecting Wrenn server; see the module docstring.

    Args:
        host: main listener address (``base_url``).
        other_host: second listener, the "other origin" for redirect tests.
        port: 0 picks a free port shared by both listeners when possible.
        lifetime: the server stops by itself after this many seconds.
        hang_limit: upper bound for every "wait for the client" state.
        idle_timeout: an idle keep-alive connection is closed after this.
        stop_timeout: bound on ``stop()`` (handler cancellation and thread join).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        other_host: str = "127.0.0.2",
        port: int = 0,
        lifetime: float = 3600.0,
        hang_limit: float = 120.0,
        idle_timeout: float = 120.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.other_host = other_host
        self._want_port = port
        self.lifetime = lifetime
        self.hang_limit = hang_limit
        self.idle_timeout = idle_timeout
        self.stop_timeout = stop_timeout
        self._log = FaultLog()
        self._nonce = itertools.count(1)
        self._nonce_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._sockets: list[socket.socket] = []  # listeners owned by the loop
        self._side_sockets: list[socket.socket] = []  # backlog fillers, caller thread
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        # Every transport ever opened, so shutdown can abort ones still
        # flushing after their handler closed them (a client that stopped
        # reading would otherwise keep them, and their sockets, alive).
        self._writers: weakref.WeakSet[asyncio.StreamWriter] = weakref.WeakSet()
        self.port = 0
        self.other_port = 0
        self._stopped = False

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> FaultServer:
        if self._thread is not None:
            raise RuntimeError("FaultServer already started")
        self._bind_main_listeners()
        self._thread = threading.Thread(target=self._thread_main, name="faultserver", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.stop_timeout) or self._startup_error is not None:
            self.stop()
            raise RuntimeError("fault server failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        """Stop serving: cancel handlers, close sockets, join the thread (bounded)."""
        if self._stopped:
            return
        self._stopped = True
        thread, loop, event = self._thread, self._loop, self._stop_event
        if thread is not None and loop is not None and event is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(event.set)
            thread.join(self.stop_timeout)
        for sock in self._side_sockets + self._sockets:
            sock.close()
        if thread is not None and thread.is_alive():
            raise RuntimeError(f"fault server thread did not stop within {self.stop_timeout} s")

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # Starting and stopping take milliseconds, so the async forms simply call
    # the sync ones; that keeps them usable under asyncio and trio alike.
    async def __aenter__(self) -> FaultServer:
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _bind_main_listeners(self) -> None:
        """Bind both listeners, on one port if at all possible."""
        for _ in range(20):
            main = _listener(self.host, self._want_port)
            port = main.getsockname()[1]
            try:
                other = _listener(self.other_host, port)
            except OSError:
                main.close()
                if self._want_port:
                    break
                continue
            self._sockets = [main, other]
            self.port = self.other_port = port
            return
        # Fall back to distinct ports (reported by other_port).
        main = _listener(self.host, self._want_port)
        other = _listener(self.other_host, 0)
        self._sockets = [main, other]
        self.port, self.other_port = main.getsockname()[1], other.getsockname()[1]

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._amain())
        except BaseException as exc:  # reported through start()/errors()
            self._startup_error = exc
            self._log.add_error("".join(traceback.format_exception(exc)))
        finally:
            self._ready.set()

    async def _amain(self) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._on_loop_exception)
        self._loop = loop
        self._stop_event = asyncio.Event()
        for sock in self._sockets:
            await self._serve_socket(sock)
        self._ready.set()
        try:
            await asyncio.wait_for(self._stop_event.wait(), self.lifetime)
        except asyncio.TimeoutError:
            pass
        finally:
            await self._shutdown()

    async def _serve_socket(self, sock: socket.socket) -> None:
        local = sock.getsockname()[:2]

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._on_connect(reader, writer, (local[0], local[1]))

        server = await asyncio.start_server(on_connect, sock=sock, limit=MAX_HEAD, backlog=1024)
        self._servers.append(server)

    async def _shutdown(self) -> None:
        for server in self._servers:
            server.close()
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self.stop_timeout / 2)
        # Anything still open or still flushing is cut, including connections whose
        # handler already ended but whose transport is still flushing to a client that
        # stopped reading (Server.abort_clients() reaches those; Python 3.13+).
        for writer in list(self._writers):
            writer.transport.abort()
        for server in self._servers:
            abort_clients = getattr(server, "abort_clients", None)
            if abort_clients is not None:
                abort_clients()
        for server in self._servers:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        # Let transports run connection_lost() so their sockets are closed
        # before asyncio.run() closes the loop.
        for _ in range(3):
            await asyncio.sleep(0)

    def _on_loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        detail = "".join(traceback.format_exception(exc)) if exc else ""
        self._log.add_error(f"{context.get('message')}\n{detail}")

    # -- connections ---------------------------------------------------------------------

    async def _on_connect(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, local: tuple[str, int]
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = writer.get_extra_info("peername") or ("?", 0)
        conn = _Conn(reader, writer, self._log.open_connection(local, (peer[0], peer[1])), local)
        self._writers.add(writer)
        writer.transport.set_write_buffer_limits(high=0)
        try:
            await self._serve_connection(conn)
        except asyncio.CancelledError:
            pass  # server stopping: fall through to close
        except (ConnectionError, WireError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass  # the client misbehaved or went away: just close
        except Exception as exc:
            self._log.add_error("".join(traceback.format_exception(exc)))
        finally:
            if not conn.closed:
                conn.close()
            self._log.close_connection(conn.conn_id, aborted=conn.aborted)
            self._tasks.discard(task)

    async def _serve_connection(self, conn: _Conn) -> None:
        for _ in range(_MAX_REQUESTS_PER_CONN):
            head = await read_head(conn.reader, self.idle_timeout)
            if head is None or not await self._handle(conn, head):
                return

    async def _handle(self, conn: _Conn, head: RawRequest) -> bool:
        key, segs, query = _split_target(head.target)
        name = split_key(key)[0] if key else "ok"
        rec = RequestRecord(
            key=key,
            scenario=name,
            attempt=self._log.next_attempt(key),
            method=head.method,
            target=head.target,
            path="/" + "/".join(segs),
            query=query,
            headers=head.headers,
            conn_id=conn.conn_id,
            time=time.monotonic(),
            local=conn.local,
        )
        self._log.add_request(rec)
        try:
            scenario = parse_scenario(name)
        except ScenarioError:
            self._log.add_error(f"unknown scenario {name!r} in {head.target!r}")
            await read_body(conn.reader, head, keep=0)
            scenario = parse_scenario("ok")
            ex = _Exchange(self, conn, head, rec, scenario, segs, query)
            envelope = {"error": {"code": "unknown_scenario", "message": name}}
            return await ex.send(_json(500, envelope))

        if scenario.kind == "resetafter":
            # Read only part of an upload, then reset: the client is still sending.
            limit = int(scenario.arg or 0) * 1024
            body, size = await read_body(conn.reader, head, keep=BODY_KEEP, limit=limit)
            self._log.update_request_body(rec, body, size)
            conn.rst()
            return False
        body, size = await read_body(conn.reader, head, keep=BODY_KEEP)
        rec = self._log.update_request_body(rec, body, size)
        ex = _Exchange(self, conn, head, rec, scenario, segs, query, body)
        keep = await _dispatch(ex)
        return keep and not conn.closed

    # -- URLs ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def other_origin_url(self) -> str:
        return f"http://{self.other_host}:{self.other_port}"

    def new_key(self, scenario: str) -> str:
        """A fresh key ``<scenario>-n<nonce>``; validates the scenario name."""
        parse_scenario(scenario)
        with self._nonce_lock:
            nonce = next(self._nonce)
        return f"{scenario}-n{nonce}"

    def url_for(self, scenario: str, *, origin: str = "main") -> str:
        """``http://127.0.0.1:PORT/s/<scenario>-n<nonce>`` with a fresh nonce.

        ``origin="other"`` gives the same on ``127.0.0.2``.
        """
        base = self.other_origin_url if origin == "other" else self.base_url
        return f"{base}/s/{self.new_key(scenario)}"

    @staticmethod
    def key_of(url_or_key: str) -> str:
        """The scenario key inside a URL from ``url_for`` (a key is returned as is)."""
        if "/s/" not in url_or_key:
            return url_or_key
        return url_or_key.split("/s/", 1)[1].split("/", 1)[0].split("?", 1)[0]

    def refusing_url(self, ms: float | None, scenario: str = "ok") -> str:
        """A URL whose port refuses connections for ``ms`` ms, then serves.

        The socket is bound but not listening, so the kernel answers SYNs with
        RST (ECONNREFUSED). After ``ms`` it starts listening on the same port.
        ``ms=None`` never listens.
        """
        loop = self._require_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((self.host, 0))
        port = sock.getsockname()[1]
        self._sockets.append(sock)
        if ms is not None:

            async def listen_later() -> None:
                task = asyncio.current_task()
                assert task is not None
                self._tasks.add(task)
                try:
                    await asyncio.sleep(ms / 1000)
                    await self._serve_socket(sock)
                except asyncio.CancelledError:
                    pass
                finally:
                    self._tasks.discard(task)

            asyncio.run_coroutine_threadsafe(listen_later(), loop)
        return f"http://{self.host}:{port}/s/{self.new_key(scenario)}"

    def backlog_full_url(self, scenario: str = "ok") -> str:
        """A URL on a listener that never accepts and whose backlog is full.

        ``listen(0)`` plus filler connections fill the accept queue; Linux then
        drops further SYNs, so a client's connect times out instead of failing
        fast.
        """
        self._require_loop()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((self.host, 0))
        listener.listen(0)
        self._side_sockets.append(listener)
        port = listener.getsockname()[1]
        for _ in range(16):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.settimeout(0.2)
            try:
                filler.connect((self.host, port))
            except OSError:
                filler.close()
                break  # this one timed out: the queue is full
            self._side_sockets.append(filler)
        return f"http://{self.host}:{port}/s/{self.new_key(scenario)}"

    @property
    def is_running(self) -> bool:
        """True while the server thread is alive (False after stop or lifetime)."""
        return self._thread is not None and self._thread.is_alive()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<FaultServer {self.base_url} other={self.other_origin_url} {state}>"

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._stopped:
            raise RuntimeError("FaultServer is not running")
        return self._loop

    # -- logs --------------------------------------------------------------------------------

    def _k(self, key: str | None) -> str | None:
        return None if key is None else self.key_of(key)

    def requests(self, key: str | None = None) -> list[RequestRecord]:
        """Requests of ``key`` (key or URL) in arrival order; all if None."""
        return self._log.requests(self._k(key))

    def count(self, key: str | None = None) -> int:
        return len(self.requests(key))

    def connections(self, key: str | None = None) -> list[ConnectionRecord]:
        """Connections that carried a request of ``key``; all if None."""
        return self._log.connections(self._k(key))

    def connections_seen(self, key: str | None = None) -> int:
        return len(self.connections(key))

    def open_connections(self, key: str | None = None) -> int:
        """Currently open TCP connections (of ``key``, or in total)."""
        if key is None:
            return self._log.open_count()
        return sum(1 for c in self.connections(key) if c.is_open)

    def max_concurrent_connections(
        self, key: str | None = None, *, since: float | None = None
    ) -> int:
        """Peak number of simultaneously open connections.

        With ``key``: among connections that carried a request of that key.
        Without: over the whole server, or only from monotonic time ``since``
        on (useful with a module-scoped server shared by several tests).
        """
        if key is None and since is None:
            return self._log.peak_open()
        k = None if key is None else self.key_of(key)
        return self._log.max_overlap(lambda c: k is None or k in c.keys, since=since)

    def ws_events(self, key: str | None = None) -> list[WsEvent]:
        return self._log.ws_events(self._k(key))

    def ws_close_frames(self, key: str | None = None) -> list[WsEvent]:
        """Close frames *received from the client* (code, reason, time)."""
        return [e for e in self.ws_events(key) if e.kind == "close"]

    def flags(self, key: str) -> dict[str, object]:
        """Per-key state set by scenarios (``deleted``, ``posted``)."""
        return self._log.flags(self.key_of(key))

    def errors(self) -> list[str]:
        """Unexpected handler errors; a healthy run keeps this empty."""
        return self._log.errors()

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
        """Poll ``predicate`` (blocking) until true or ``timeout``; returns its last value."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    async def await_until(self, predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
        """``wait_until`` for async tests (asyncio or trio): sleeps with anyio."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                return False
            await anyio.sleep(0.01)
        return True


def _listener(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock
