"""The one module that touches httpx and httpcore internals.

Every private attribute or function of httpx/httpcore the SDK relies on is used here and
listed in ``PRIVATE_API`` (tests/test_netbackend_internals.py checks that each exists in
the installed versions, so an upgrade that moves one fails loudly; pyproject pins
httpcore to the tested minor release). Nothing else in ``src/wrenn`` reaches past their
public API. What it does with them:

* reads the proxy environment variables the way httpx does (``environment_proxies``);
* wraps the network backends of the pools the SDK builds (below);
* reads a pool's size and drops its ownerless connections (``pool_size``, ``heal_pool``);
* stops the clients the SDK builds from parsing ``Set-Cookie`` (``skip_cookie_extraction``);
* gives the pools the SDK builds a linear request-to-connection assignment
  (``linear_assignment``, below the backends).

Wrappers of the network backends of the httpx transports the SDK builds itself.

A cheaper idle-connection check for the async client's own connection pool.

Before it reuses a kept-alive connection, and again when a response is closed, httpcore
1.0.x asks each idle connection whether the server has closed it: it polls the socket
for readability. On asyncio that question goes through anyio's typed-attribute lookup,
which rebuilds a table of socket attributes on every call, and it cost more than 5% of
a small call's client CPU (measured in bench/). The socket of a connection never
changes, so this wrapper looks it up once and polls it directly. Everything else passes
through unchanged; a stream without an asyncio or stdlib socket behind it (trio's,
whose own check is already cheap, or a mock's) is not wrapped at all.

The blocking client's pool gets another wrapper (``bound_attempts``), which fits every
socket wait into the wall-clock bound of the current attempt.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

import httpcore
import httpx
from httpcore._utils import is_socket_readable
from httpx._utils import get_environment_proxies

from ._compat import ATTEMPT_DEADLINE
from ._logs import logger

if TYPE_CHECKING:
    from asyncio.trsock import TransportSocket

# (module, dotted attribute) of every private name used here; instance attributes are
# checked on a freshly built transport by the test.
PRIVATE_API = (
    ("httpx._utils", "get_environment_proxies"),
    ("httpcore._utils", "is_socket_readable"),
)
# Attributes of an httpx transport and its httpcore pool (and pool requests/connections).
TRANSPORT_ATTRIBUTES = ("_pool",)
POOL_ATTRIBUTES = (
    "_network_backend",
    "_connections",
    "_requests",
    "_optional_thread_lock",
    "_max_connections",
    "_max_keepalive_connections",
    "_http2",
    "_assign_requests_to_connections",
    "create_connection",
)
# Attributes of an httpx client.
CLIENT_ATTRIBUTES = ("_cookies",)
POOL_REQUEST_ATTRIBUTES = ("connection", "request", "is_queued", "assign_to_connection")
POOL_CONNECTION_ATTRIBUTES = ("_connection", "_connect_failed")


def environment_proxies() -> dict[str, str | None]:
    """``HTTP(S)_PROXY``/``ALL_PROXY``/``NO_PROXY`` as httpx reads them: mount pattern to
    proxy URL (``None``: no proxy for that pattern)."""
    return get_environment_proxies()


def pool_size(client: httpx.AsyncClient | httpx.Client) -> int | None:
    """``max_connections`` of the pool behind a client, if it has a recognisable one."""
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    size = getattr(pool, "_max_connections", None)
    return size if isinstance(size, int) and size > 0 else None


def heal_pool(client: httpx.AsyncClient | httpx.Client) -> int:
    """Drop pool connections stuck CONNECTING with no request that owns them.

    httpcore 1.0.9 can leave such a connection behind when a queued request is
    cancelled right after another task's call assigned it a new connection: it never
    connects, never closes and counts against ``max_connections`` forever, until
    every call fails with a pool timeout (RELIABILITY.md CL-04). Such a connection has
    no socket, so dropping it from the pool's list is all the cleanup it needs. Reads
    httpcore internals defensively: a transport without them is left alone.
    """
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    connections = getattr(pool, "_connections", None)
    requests = getattr(pool, "_requests", None)
    lock = getattr(pool, "_optional_thread_lock", None)
    if not isinstance(connections, list) or not isinstance(requests, list) or lock is None:
        return 0
    with lock:
        owned = {id(getattr(r, "connection", None)) for r in requests}
        zombies = [
            c
            for c in connections
            if id(c) not in owned
            and getattr(c, "_connection", False) is None
            and getattr(c, "_connect_failed", True) is False
        ]
        for connection in zombies:
            connections.remove(connection)
    if zombies:
        logger.debug("dropped %d ownerless connecting pool connection(s)", len(zombies))
    return len(zombies)


class _UnfilledCookies(httpx.Cookies):
    """Cookies that no response adds to."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


def skip_cookie_extraction(client: httpx.AsyncClient | httpx.Client) -> None:
    """Stop a client we built from offering each response to its cookie jar.

    Our clients keep no cookies: their jar refuses every one. httpx still wraps every
    response and its request in urllib objects for the jar to turn down, about a tenth
    of a small call's client CPU (measured in bench/); here the client's cookies skip
    that step and keep the refusing jar. Nothing is changed on a client whose cookies
    are not where httpx 0.28 keeps them.
    """
    cookies = getattr(client, "_cookies", None)
    if type(cookies) is httpx.Cookies:
        client._cookies = _UnfilledCookies(cookies.jar)


def cache_readable_socket(transport: httpx.AsyncBaseTransport | httpx.BaseTransport) -> None:
    """Wrap the network backend of an async httpx transport we built ourselves.

    A sync transport (its check is already a direct poll) or one whose httpcore internals
    look different is left alone.
    """
    _wrap_backend(
        transport, httpcore.AsyncConnectionPool, httpcore.AsyncNetworkBackend, _ReadableCacheBackend
    )


def _wrap_backend(
    transport: httpx.AsyncBaseTransport | httpx.BaseTransport,
    pool_type: type[Any],
    backend_type: type[Any],
    wrapper: type[Any],
) -> None:
    """Put ``wrapper`` around the network backend of ``transport``'s pool, once, if the
    pool and its backend are of the expected httpcore types (else leave it alone)."""
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if (
        isinstance(pool, pool_type)
        and isinstance(backend, backend_type)
        and not isinstance(backend, wrapper)
    ):
        pool._network_backend = wrapper(backend)


def _wrap(stream: httpcore.AsyncNetworkStream) -> httpcore.AsyncNetworkStream:
    # asyncio hands out its sockets as TransportSocket; trio's own socket type already
    # answers cheaply and is left alone. Imported here: only an async connect gets here.
    from asyncio.trsock import TransportSocket

    sock = stream.get_extra_info("socket")
    if isinstance(sock, (socket.socket, TransportSocket)):
        return _ReadableCacheStream(stream, sock)
    return stream


class _ReadableCacheStream(httpcore.AsyncNetworkStream):
    def __init__(
        self, stream: httpcore.AsyncNetworkStream, sock: socket.socket | TransportSocket
    ) -> None:
        self._stream = stream
        self._sock = sock

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _wrap(await self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # httpcore's own check; asyncio's TransportSocket wraps a socket and is what
            # httpcore itself passes here (through anyio) on this path.
            return is_socket_readable(cast(socket.socket, self._sock))
        return self._stream.get_extra_info(info)


class _ReadableCacheBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        self._backend = backend

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(
            host,
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )
        return _wrap(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )
        return _wrap(stream)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


# --- the blocking client: one attempt's wall-clock bound ----------------------------


def bound_attempts(transport: httpx.AsyncBaseTransport | httpx.BaseTransport) -> None:
    """Make the blocking transport we built honour ``ATTEMPT_DEADLINE`` in every socket wait.

    httpx applies a timeout to each socket operation, so a server that drips a byte at
    a time holds an attempt indefinitely. The async client ends the attempt with a
    cancel scope; a thread cannot be cancelled, so here every connect, read and write
    of the attempt is given at most the time left before its deadline and fails as a
    timeout of that operation once it has passed. An async transport, or one whose
    httpcore internals look different, is left alone.
    """
    _wrap_backend(
        transport, httpcore.ConnectionPool, httpcore.NetworkBackend, _AttemptDeadlineBackend
    )


def _within_attempt(timeout: float | None, expired: type[Exception]) -> float | None:
    """``timeout`` shortened to the time left in this thread's attempt."""
    deadline = ATTEMPT_DEADLINE.get()
    if deadline is None:
        return timeout
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise expired("the attempt's timeout passed")
    return remaining if timeout is None else min(timeout, remaining)


class _AttemptDeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _within_attempt(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _within_attempt(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        timeout = _within_attempt(timeout, httpcore.ConnectTimeout)
        return _AttemptDeadlineStream(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _AttemptDeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(
            host,
            port,
            timeout=_within_attempt(timeout, httpcore.ConnectTimeout),
            local_address=local_address,
            socket_options=socket_options,
        )
        return _AttemptDeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_unix_socket(
            path,
            timeout=_within_attempt(timeout, httpcore.ConnectTimeout),
            socket_options=socket_options,
        )
        return _AttemptDeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


# --- both clients: assigning queued requests to connections in linear time --------------


def linear_assignment(transport: httpx.AsyncBaseTransport | httpx.BaseTransport) -> None:
    """Give the HTTP/1.1 pool of a transport we built a linear request assignment.

    httpcore 1.0.x reassigns every queued request to connections whenever a request
    enters or leaves the pool, scanning all connections once per queued request, and
    it hands a kept-alive connection that is idle to every queued request at once:
    all but one then find it busy and go round again. Under fan-out (a full pool and
    a queue) that bookkeeping, not the network, was most of the client's CPU (bench/,
    "concurrent"). The replacement keeps httpcore's rules (the same order, the same
    cleanup, the same limits) and differs only in never giving a connection that a
    request already holds to another one: on HTTP/1.1 that request would fail with
    ``ConnectionNotAvailable`` and queue again. A pool of another type (a proxy's,
    HTTP/2) or one whose internals look different is left alone.
    """
    pool = getattr(transport, "_pool", None)
    if getattr(pool, "_http2", True) is not False:
        return
    if type(pool) is httpcore.AsyncConnectionPool:
        pool.__class__ = _LinearAsyncPool
    elif type(pool) is httpcore.ConnectionPool:
        pool.__class__ = _LinearPool


def _assign_linear(pool: Any) -> list[Any]:
    """httpcore's ``_assign_requests_to_connections`` without its quadratic scans.

    Called with the pool's lock held, by the pool itself; returns the connections the
    caller must close. While the pool serves requests, an idle connection is checked
    for expiry (a poll of its socket) when it is about to be handed out rather than on
    every pass: under fan-out those polls, one per idle connection per pass, were the
    rest of the bookkeeping's cost. Once the pool has no request left, every
    connection is checked, as httpcore does on every pass.
    """
    connections: list[Any] = pool._connections
    requests: list[Any] = pool._requests
    queued = [request for request in requests if request.is_queued()]
    check_idle = not requests
    closing: list[Any] = []
    # Clean-up first, as httpcore does: closed, expired, then idle connections while
    # the pool holds more than its keep-alive limit (httpcore counts every connection
    # in the pool there, not only the idle ones: kept as it is).
    kept: list[Any] = []
    remaining = len(connections)
    for connection in connections:
        idle = connection.is_idle()
        if connection.is_closed():
            remaining -= 1
            continue
        expired = (check_idle or not idle) and connection.has_expired()
        if expired or (idle and remaining > pool._max_keepalive_connections):
            remaining -= 1
            closing.append(connection)
        else:
            kept.append(connection)
    connections[:] = kept
    if not queued:
        return closing

    held = {id(request.connection) for request in requests if not request.is_queued()}
    free = [c for c in connections if id(c) not in held and c.is_available()]
    spare_idle = [c for c in connections if id(c) not in held and c.is_idle()]
    for pool_request in queued:
        origin = pool_request.request.url.origin
        connection = _take_free(free, spare_idle, origin, connections, closing)
        if connection is None:
            if len(connections) < pool._max_connections:
                connection = pool.create_connection(origin)
                connections.append(connection)
            elif spare_idle:
                spare = spare_idle.pop(0)
                if spare in free:
                    free.remove(spare)
                connections.remove(spare)
                closing.append(spare)
                connection = pool.create_connection(origin)
                connections.append(connection)
            else:
                continue
        pool_request.assign_to_connection(connection)
    return closing


def _take_free(
    free: list[Any], idle: list[Any], origin: Any, connections: list[Any], closing: list[Any]
) -> Any:
    """The first free connection to ``origin`` that has not expired, taken out of the
    lists; an expired one met on the way is moved from the pool to ``closing``."""
    for _ in range(len(free)):  # each round takes one connection out of ``free``
        connection = next((c for c in free if c.can_handle_request(origin)), None)
        if connection is None:
            return None
        free.remove(connection)
        if connection in idle:
            idle.remove(connection)
            if connection.has_expired():
                connections.remove(connection)
                closing.append(connection)
                continue
        return connection
    return None


class _LinearAsyncPool(httpcore.AsyncConnectionPool):
    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        return _assign_linear(self)


class _LinearPool(httpcore.ConnectionPool):
    def _assign_requests_to_connections(self) -> list[httpcore.ConnectionInterface]:
        return _assign_linear(self)
