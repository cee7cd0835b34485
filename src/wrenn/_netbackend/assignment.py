"""Both clients: assigning queued requests to connections in linear time."""

from __future__ import annotations

from typing import Any

import httpcore
import httpx


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
