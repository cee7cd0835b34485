"""The linear request-to-connection assignment of the SDK's pools (``wrenn._netbackend.assignment``).

It replaces httpcore 1.0.x's ``_assign_requests_to_connections`` on the HTTP/1.1 pools
the SDK builds. These tests drive it with stand-in connections and httpcore's own pool
requests, rule by rule: httpcore's order and limits, plus the one difference (a
connection a request holds is never handed to another).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx
import pytest

from wrenn import AsyncWrennClient, WrennClient
from wrenn._netbackend import assignment as _netbackend

HERE = httpcore.Origin(b"http", b"127.0.0.1", 8000)
ELSEWHERE = httpcore.Origin(b"http", b"127.0.0.2", 8000)


@dataclass(eq=False)
class Conn:
    """A stand-in for an HTTP/1.1 connection: idle means available, as in httpcore."""

    origin: httpcore.Origin = field(default_factory=lambda: HERE)
    state: str = "idle"  # idle, active, connecting, closed
    expired: bool = False
    expiry_checks: int = field(default=0)

    def is_closed(self) -> bool:
        return self.state == "closed"

    def has_expired(self) -> bool:
        self.expiry_checks += 1
        return self.expired

    def is_idle(self) -> bool:
        return self.state == "idle"

    def is_available(self) -> bool:
        return self.state == "idle"

    def can_handle_request(self, origin: httpcore.Origin) -> bool:
        return origin == self.origin


@dataclass(eq=False)
class Pool:
    max_connections: int = 4
    max_keepalive: int = 4
    connections: list[Any] = field(default_factory=list)
    requests: list[Any] = field(default_factory=list)

    # the attribute names httpcore's pool has
    @property
    def _connections(self) -> list[Any]:
        return self.connections

    @property
    def _requests(self) -> list[Any]:
        return self.requests

    @property
    def _max_connections(self) -> int:
        return self.max_connections

    @property
    def _max_keepalive_connections(self) -> int:
        return self.max_keepalive

    def create_connection(self, origin: httpcore.Origin) -> Conn:
        return Conn(origin, state="connecting")

    def queue(self, origin: httpcore.Origin = HERE) -> Any:
        url = httpcore.URL(scheme=origin.scheme, host=origin.host, port=origin.port, target="/")
        request = httpcore._sync.connection_pool.PoolRequest(httpcore.Request("GET", url))
        self.requests.append(request)
        return request


def test_an_idle_connection_goes_to_one_queued_request_only() -> None:
    pool = Pool(max_connections=1)
    idle = Conn()
    pool.connections.append(idle)
    first, second, third = pool.queue(), pool.queue(), pool.queue()
    assert _netbackend._assign_linear(pool) == []
    assert first.connection is idle
    # httpcore 1.0.9 hands ``idle`` to all three; two of them then fail with
    # ConnectionNotAvailable and queue again.
    assert second.is_queued() and third.is_queued()
    # A later pass does not hand out the connection ``first`` still holds.
    assert _netbackend._assign_linear(pool) == []
    assert second.is_queued() and third.is_queued()


def test_queued_requests_get_idle_connections_then_new_ones_up_to_the_limit() -> None:
    pool = Pool(max_connections=3)
    idle = Conn()
    pool.connections.append(idle)
    requests = [pool.queue() for _ in range(4)]
    _netbackend._assign_linear(pool)
    assert requests[0].connection is idle
    created = [r.connection for r in requests[1:3]]
    assert all(c.state == "connecting" for c in created) and created[0] is not created[1]
    assert requests[3].is_queued()  # the pool is exhausted: it waits
    assert len(pool.connections) == 3


def test_a_connection_freed_by_a_finished_request_goes_to_the_next_one() -> None:
    pool = Pool(max_connections=1)
    first, second = pool.queue(), pool.queue()
    _netbackend._assign_linear(pool)
    connection = first.connection
    assert second.is_queued()
    connection.state = "idle"  # the response was read and closed
    pool.requests.remove(first)
    _netbackend._assign_linear(pool)
    assert second.connection is connection


def test_an_expired_idle_connection_is_closed_and_replaced_when_handed_out() -> None:
    pool = Pool(max_connections=2)
    stale, fresh = Conn(expired=True), Conn()
    pool.connections += [stale, fresh]
    busy = pool.queue()
    busy.assign_to_connection(Conn(state="active"))
    request = pool.queue()
    assert _netbackend._assign_linear(pool) == [stale]
    assert request.connection is fresh
    assert pool.connections == [fresh]


def test_with_requests_in_the_pool_idle_connections_are_checked_only_when_handed_out() -> None:
    pool = Pool(max_connections=3)
    first, second = Conn(), Conn()
    pool.connections += [first, second]
    pool.queue()
    _netbackend._assign_linear(pool)
    assert (first.expiry_checks, second.expiry_checks) == (1, 0)


def test_an_empty_pool_checks_every_connection_as_httpcore_does() -> None:
    pool = Pool()
    stale, fresh, gone = Conn(expired=True), Conn(), Conn(state="closed")
    pool.connections += [stale, fresh, gone]
    assert _netbackend._assign_linear(pool) == [stale]
    assert pool.connections == [fresh]
    assert fresh.expiry_checks == 1


def test_keepalive_cleanup_counts_every_connection_like_httpcore() -> None:
    pool = Pool(max_connections=4, max_keepalive=2)
    connections = [Conn(), Conn(state="active"), Conn(), Conn()]
    pool.connections += connections
    # httpcore compares the pool's whole size with the keep-alive limit: idle
    # connections are closed while more than two connections remain.
    assert _netbackend._assign_linear(pool) == [connections[0], connections[2]]
    assert pool.connections == [connections[1], connections[3]]


def test_a_full_pool_closes_an_idle_connection_to_another_origin() -> None:
    pool = Pool(max_connections=2)
    other, busy = Conn(ELSEWHERE), Conn(state="active")
    pool.connections += [other, busy]
    pool.queue().assign_to_connection(busy)
    request = pool.queue()
    assert _netbackend._assign_linear(pool) == [other]
    assert request.connection.state == "connecting"
    assert request.connection.origin == HERE
    assert other not in pool.connections


def test_a_held_idle_connection_to_another_origin_is_not_closed() -> None:
    pool = Pool(max_connections=1)
    other = Conn(ELSEWHERE)
    pool.connections.append(other)
    pool.queue(ELSEWHERE).assign_to_connection(other)  # its request has not started yet
    request = pool.queue()
    assert _netbackend._assign_linear(pool) == []
    assert request.is_queued()


@pytest.mark.parametrize(
    ("transport_class", "pool_class"),
    [
        (httpx.AsyncHTTPTransport, _netbackend._LinearAsyncPool),
        (httpx.HTTPTransport, _netbackend._LinearPool),
    ],
)
def test_only_plain_http1_pools_get_the_linear_assignment(
    transport_class: type, pool_class: type
) -> None:
    transport = transport_class()
    _netbackend.linear_assignment(transport)
    assert type(transport._pool) is pool_class
    http2 = transport_class(http2=True)
    _netbackend.linear_assignment(http2)
    assert type(http2._pool) is not pool_class
    proxied = transport_class(proxy="http://127.0.0.1:9")
    _netbackend.linear_assignment(proxied)
    assert type(proxied._pool) is not pool_class


async def _pool_type_of_async_client() -> type:
    async with AsyncWrennClient(api_key="wrn_" + "0" * 32, base_url="http://127.0.0.1:9") as c:
        return type(c.http._transport._pool)  # type: ignore[attr-defined]


def test_the_sdk_clients_use_it() -> None:
    import anyio

    with WrennClient(api_key="wrn_" + "0" * 32, base_url="http://127.0.0.1:9") as client:
        assert type(client.http._transport._pool) is _netbackend._LinearPool  # type: ignore[attr-defined]
    assert anyio.run(_pool_type_of_async_client) is _netbackend._LinearAsyncPool
