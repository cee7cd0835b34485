"""Wrappers of the network backends of the httpx transports the SDK builds itself.

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

from .._compat import ATTEMPT_DEADLINE

if TYPE_CHECKING:
    from asyncio.trsock import TransportSocket


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
