"""The native asyncio connections of the async client's pool, against loopback servers.

asyncio only: under trio the pool keeps httpcore's own backend (checked last).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpcore
import pytest
import trio

from wrenn._netbackend.asyncio_streams import AsyncioBackend, AsyncioStream
from wrenn._netbackend.sockets import speak_asyncio_natively

from .reliability.fixtures import self_signed_cert

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
BACKEND = AsyncioBackend(httpcore.AnyIOBackend())


@contextlib.asynccontextmanager
async def serving(
    handler: Handler, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    """A loopback server for one test; every connection's handler is cancelled at the end."""
    tasks: set[asyncio.Task[None]] = set()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0, ssl=ssl_context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.wait_for(server.wait_closed(), 5)


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(30)


async def connect(port: int) -> httpcore.AsyncNetworkStream:
    return await BACKEND.connect_tcp("127.0.0.1", port, timeout=5)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 20))


def test_bytes_go_both_ways_in_order_and_reads_are_capped() -> None:
    async def test() -> None:
        async with serving(echo) as port:
            stream = await connect(port)
            assert isinstance(stream, AsyncioStream)
            payload = bytes(range(256)) * 8192  # 2 MiB: reading pauses and resumes
            await stream.write(payload, timeout=5)
            received = bytearray()
            while len(received) < len(payload):
                chunk = await stream.read(65536, timeout=5)
                assert 0 < len(chunk) <= 65536
                received += chunk
            assert bytes(received) == payload
            await stream.aclose()

    run(test)


def test_a_flood_from_the_server_is_buffered_within_bounds_and_all_read() -> None:
    payload = bytes(range(256)) * 32768  # 8 MiB, more than the kernel buffers hold

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(payload)
        await writer.drain()
        await asyncio.sleep(30)

    async def test() -> None:
        async with serving(flood) as port:
            stream = await connect(port)
            await asyncio.sleep(0.3)  # the client reads nothing yet: reading must pause
            protocol = stream._protocol  # type: ignore[attr-defined]
            assert protocol.reading_paused
            assert len(protocol.buffer) < 2 * 1024 * 1024
            received = bytearray()
            while len(received) < len(payload):
                received += await stream.read(65536, timeout=5)
            assert bytes(received) == payload
            await stream.aclose()

    run(test)


def test_two_readers_and_a_writer_share_one_connection() -> None:
    async def test() -> None:
        async with serving(echo) as port:
            stream = await connect(port)
            readers = [asyncio.ensure_future(stream.read(1, timeout=5)) for _ in range(2)]
            await asyncio.sleep(0.05)  # both wait
            await stream.write(b"ab", timeout=5)
            assert sorted(await asyncio.gather(*readers)) == [b"a", b"b"]
            await stream.aclose()

    run(test)


def test_a_read_that_waits_too_long_is_a_read_timeout() -> None:
    async def test() -> None:
        async with serving(silent) as port:
            stream = await connect(port)
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(httpcore.ReadTimeout):
                await stream.read(100, timeout=0.2)
            assert 0.15 < loop.time() - started < 2
            await stream.aclose()

    run(test)


def test_cancelling_a_read_is_a_cancellation_not_a_timeout() -> None:
    async def test() -> None:
        async with serving(silent) as port:
            stream = await connect(port)
            reader = asyncio.ensure_future(stream.read(100, timeout=0.3))
            await asyncio.sleep(0.05)
            reader.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reader
            # The timer was dropped with the wait: nothing fires into a later read.
            with pytest.raises(httpcore.ReadTimeout):
                await stream.read(100, timeout=0.5)
            await stream.aclose()

    run(test)


def test_the_server_closing_ends_reads_and_shows_on_an_idle_connection() -> None:
    closed = asyncio.Event

    async def test() -> None:
        hang_up = closed()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await hang_up.wait()

        async with serving(handler) as port:
            stream = await connect(port)
            await asyncio.sleep(0.05)
            assert stream.get_extra_info("is_readable") is False
            hang_up.set()
            for _ in range(100):  # bounded: the FIN arrives within a few loop turns
                if stream.get_extra_info("is_readable"):
                    break
                await asyncio.sleep(0.01)
            assert stream.get_extra_info("is_readable") is True
            assert await stream.read(100, timeout=1) == b""
            await stream.aclose()

    run(test)


def test_a_reset_connection_is_a_read_error_and_a_write_error() -> None:
    async def test() -> None:
        async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            writer.transport.abort()

        async with serving(reset) as port:
            stream = await connect(port)
            with pytest.raises(httpcore.ReadError):
                await stream.read(100, timeout=2)
            with pytest.raises(httpcore.WriteError):
                await stream.write(b"more", timeout=2)
            await stream.aclose()

    run(test)


def test_a_server_that_stops_reading_makes_a_write_time_out() -> None:
    async def test() -> None:
        async with serving(silent) as port:
            stream = await BACKEND.connect_tcp(
                "127.0.0.1",
                port,
                timeout=5,
                socket_options=[(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)],
            )
            with pytest.raises(httpcore.WriteTimeout):
                for _ in range(2000):  # bounded: the kernel buffers fill long before
                    await stream.write(b"x" * 65536, timeout=0.2)
            stream_socket = stream.get_extra_info("socket")
            assert stream_socket.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) <= 16384
            await stream.aclose()

    run(test)


def test_connecting_to_a_closed_port_is_a_connect_error() -> None:
    async def test() -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]  # bound, not listening: refused
            with pytest.raises(httpcore.ConnectError):
                await connect(port)

    run(test)


def test_tls_is_started_on_the_native_connection(tmp_path: Path) -> None:
    paths = self_signed_cert(str(tmp_path))
    if paths is None:
        pytest.xfail("neither the cryptography package nor the openssl CLI is available")
    cert, key = paths
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)

    async def test() -> None:
        async with serving(echo, server_context) as port:
            plain = await connect(port)
            stream = await plain.start_tls(
                ssl.create_default_context(cafile=cert), server_hostname="127.0.0.1", timeout=5
            )
            assert stream.get_extra_info("ssl_object") is not None
            await stream.write(b"over tls", timeout=5)
            assert await stream.read(100, timeout=5) == b"over tls"
            await stream.aclose()

            untrusted = await connect(port)
            with pytest.raises(httpcore.ConnectError):
                await untrusted.start_tls(
                    ssl.create_default_context(), server_hostname="127.0.0.1", timeout=5
                )

    run(test)


def test_under_trio_the_pool_keeps_httpcores_backend() -> None:
    import httpx

    async def test() -> None:
        transport = httpx.AsyncHTTPTransport()
        speak_asyncio_natively(transport)
        assert isinstance(transport._pool._network_backend, AsyncioBackend)
        with trio.fail_after(5), socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            probe.listen()
            stream = await transport._pool._network_backend.connect_tcp(
                "127.0.0.1", probe.getsockname()[1], timeout=5
            )
            assert not isinstance(stream, AsyncioStream)
            await stream.aclose()
        await transport.aclose()

    trio.run(test)
