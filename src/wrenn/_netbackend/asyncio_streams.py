"""Connections of the async client's own pool, spoken natively when the loop is asyncio.

httpcore reaches sockets through anyio. Under asyncio every read and write then opens
a cancel scope for its timeout, and every write yields to the event loop once more
before it sends: a few loop iterations and scopes per call, each with an epoll
round-trip, and on a small call that was the largest cost left that was ours to
remove (measured in bench/). This stream sits directly on an asyncio transport and
protocol: a write hands the bytes to the transport and waits only when the transport
asks for back-pressure; a read returns what is already buffered, else waits for the
protocol with a timer instead of a cancel scope.

Cancelling the task (anyio's cancel scopes, ``asyncio.timeout``, the SDK's own attempt
deadline) cancels the wait and ends the call as before. Under trio, or any loop other
than asyncio, the wrapped backend (httpcore's own) is used unchanged.

Whether an idle connection was closed by the server (httpcore asks before reusing one)
is answered from the protocol's state: asyncio reads the socket as soon as data or EOF
arrive, so the protocol knows, and no poll of the socket is needed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore

from .._constants import CONNECTION_READ_BUFFER, HAPPY_EYEBALLS_DELAY


class _Protocol(asyncio.Protocol):
    """Buffers what the server sends and wakes whoever waits to read or to write.

    httpcore reads and writes a connection from one task at a time; a WebSocket may read
    in one task and write in another, so each side keeps a list of waiters.
    """

    def __init__(self) -> None:
        # The transport the protocol is reached through: TLS replaces it (``start_tls``).
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None  # why the connection was lost
        self.reading_paused = False
        self._read_waiters: list[asyncio.Future[None]] = []
        self._drain_waiters: list[asyncio.Future[None]] = []
        self.writing_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > CONNECTION_READ_BUFFER and self.transport is not None:
            self.transport.pause_reading()
            self.reading_paused = True
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False  # close the transport: HTTP/1.1 has no use for a half-open socket

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc or self.error
        self._wake_reader()
        self._wake_writer()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake_writer()

    def _wake_reader(self) -> None:
        if self._read_waiters:
            _wake(self._read_waiters)

    def _wake_writer(self) -> None:
        if self._drain_waiters:
            _wake(self._drain_waiters)

    async def wait_readable(self, timeout: float | None) -> None:
        await _wait(self._read_waiters, timeout, httpcore.ReadTimeout)

    async def wait_drained(self, timeout: float | None) -> None:
        await _wait(self._drain_waiters, timeout, httpcore.WriteTimeout)


def _wake(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)
    waiters.clear()


async def _wait(
    waiters: list[asyncio.Future[None]], timeout: float | None, expired: type[Exception]
) -> None:
    """Join ``waiters`` until woken; after ``timeout`` seconds raise ``expired`` instead.

    The timer completes the waiter rather than cancelling it, so a cancellation of the
    task always comes from outside and always propagates as one.
    """
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiters.append(waiter)
    if timeout is None:
        try:
            await waiter
        finally:
            _forget(waiters, waiter)
        return
    timed_out = False

    def expire() -> None:
        nonlocal timed_out
        if not waiter.done():
            timed_out = True
            waiter.set_result(None)

    timer = asyncio.get_running_loop().call_later(max(timeout, 0.0), expire)
    try:
        await waiter
    finally:
        timer.cancel()
        _forget(waiters, waiter)
    if timed_out:
        raise expired(f"no progress in {timeout} s")


def _forget(waiters: list[asyncio.Future[None]], waiter: asyncio.Future[None]) -> None:
    """Drop a waiter that timed out or was cancelled (a woken one is already gone)."""
    if waiters and waiter in waiters:
        waiters.remove(waiter)


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        protocol.transport = transport
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        while not protocol.buffer and not protocol.eof:  # another reader may win the bytes
            await protocol.wait_readable(timeout)
        if protocol.buffer:
            if len(protocol.buffer) <= max_bytes:
                data = bytes(protocol.buffer)
                protocol.buffer.clear()
            else:
                data = bytes(protocol.buffer[:max_bytes])
                del protocol.buffer[:max_bytes]
            if protocol.reading_paused and len(protocol.buffer) <= CONNECTION_READ_BUFFER // 2:
                protocol.reading_paused = False
                self._transport.resume_reading()
            return data
        if protocol.error is not None:
            raise httpcore.ReadError(str(protocol.error) or repr(protocol.error))
        return b""  # the server closed the connection

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        self._check_writable()
        self._transport.write(buffer)
        if self._protocol.writing_paused:
            await self._protocol.wait_drained(timeout)
            self._check_writable()

    def _check_writable(self) -> None:
        if self._transport.is_closing() or self._protocol.error is not None:
            reason = self._protocol.error
            raise httpcore.WriteError(f"the connection is closed ({reason!r})")

    async def aclose(self) -> None:
        transport = self._transport
        if transport.is_closing():
            return
        transport.close()
        try:
            # asyncio closes the socket on its next turn: give it that turn, so a client
            # closed just before its loop ends leaves no socket behind.
            await asyncio.sleep(0)
        finally:
            transport.abort()  # unsent bytes are of no use to a connection we drop

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            transport = await asyncio.wait_for(
                loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                ),
                timeout,
            )
        except asyncio.TimeoutError as exc:
            self._transport.abort()
            raise httpcore.ConnectTimeout("the TLS handshake timed out") from exc
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            self._transport.abort()
            raise httpcore.ConnectError(str(exc) or repr(exc)) from exc
        if transport is None:  # the connection closed during the handshake
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        return AsyncioStream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # asyncio reads as soon as anything arrives, so an idle connection the server
            # closed (or wrote to out of turn) has already told the protocol.
            return bool(self._protocol.buffer) or self._protocol.eof
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Native asyncio connections when the running loop is asyncio; else ``fallback``."""

    def __init__(self, fallback: httpcore.AsyncNetworkBackend) -> None:
        self._fallback = fallback

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if not _under_asyncio():
            return await self._fallback.connect_tcp(
                host, port, timeout, local_address=local_address, socket_options=socket_options
            )
        loop = asyncio.get_running_loop()
        connect = loop.create_connection(
            _Protocol,
            host,
            port,
            local_addr=(local_address, 0) if local_address else None,
            happy_eyeballs_delay=None if _is_ip_address(host) else HAPPY_EYEBALLS_DELAY,
        )
        return await _connected(connect, timeout, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if not _under_asyncio():
            return await self._fallback.connect_unix_socket(
                path, timeout, socket_options=socket_options
            )
        connect = asyncio.get_running_loop().create_unix_connection(_Protocol, path)
        return await _connected(connect, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._fallback.sleep(seconds)


def _under_asyncio() -> bool:
    """True when the running event loop is asyncio's, and no trio runs as its guest.

    trio (which depends on sniffio) marks its tasks for sniffio, also in guest mode on an
    asyncio loop; without sniffio installed, trio cannot be running.
    """
    try:
        import sniffio
    except ImportError:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True
    try:
        return sniffio.current_async_library() == "asyncio"
    except sniffio.AsyncLibraryNotFoundError:
        return False


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _connected(
    connect: Any, timeout: float | None, socket_options: Iterable[Any] | None
) -> AsyncioStream:
    try:
        transport, protocol = await asyncio.wait_for(connect, timeout)
    except asyncio.TimeoutError as exc:
        raise httpcore.ConnectTimeout(f"no connection in {timeout} s") from exc
    except OSError as exc:
        raise httpcore.ConnectError(str(exc) or repr(exc)) from exc
    sock = transport.get_extra_info("socket")
    try:
        for option in socket_options or ():
            sock.setsockopt(*option)
    except OSError as exc:
        transport.abort()
        raise httpcore.ConnectError(str(exc) or repr(exc)) from exc
    return AsyncioStream(transport, protocol)


__all__ = ["AsyncioBackend", "AsyncioStream"]
