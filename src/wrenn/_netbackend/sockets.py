"""Wrappers of the network backends of the httpx transports the SDK builds itself.

The async client's pool speaks asyncio natively when it runs under asyncio
(``speak_asyncio_natively``, the streams are in ``asyncio_streams.py``); under trio it
keeps httpcore's own backend.

The blocking client's pool gets another wrapper (``bound_attempts``), which fits every
socket wait into the wall-clock bound of the current attempt.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from .._compat import ATTEMPT_DEADLINE
from .asyncio_streams import AsyncioBackend


def speak_asyncio_natively(transport: httpx.AsyncBaseTransport | httpx.BaseTransport) -> None:
    """Give an async httpx transport we built ourselves native asyncio connections
    (``asyncio_streams.py``) whenever it runs under asyncio.

    A sync transport, or one whose httpcore internals look different, is left alone.
    """
    _wrap_backend(
        transport, httpcore.AsyncConnectionPool, httpcore.AsyncNetworkBackend, AsyncioBackend
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
