"""Helpers shared by the reliability suite (RELIABILITY.md §3).

Used by the hand-written async tests in ``tests/_async/test_reliability_*.py``, by
their generated sync twins, and by the single-runtime modules in this directory.
Names with an ``a`` prefix have a blocking twin without it (``agather``/``gather``):
``build_sync.py`` maps one to the other.
"""

from __future__ import annotations

import concurrent.futures
import gzip
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import anyio
import httpx

from tests.faultserver import FaultServer
from tests.helpers import API_KEY

T = TypeVar("T")

KEY = API_KEY
CID = "cl-0k3x9a8b7c6d5e4f3g2h1i0j9"


@contextmanager
def running_fault_server(**kwargs: Any) -> Iterator[FaultServer]:
    """A started FaultServer that is always stopped, with bounded waits."""
    kwargs.setdefault("hang_limit", 30.0)
    kwargs.setdefault("lifetime", 900.0)
    with FaultServer(**kwargs) as server:
        yield server
        assert server.errors() == [], server.errors()


class SleepRecorder:
    """Replaces the retry sleep: records each requested delay, optionally sleeps a bit."""

    def __init__(self, real: float = 0.0) -> None:
        self.delays: list[float] = []
        self.real = real

    async def asleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        await anyio.sleep(min(seconds, self.real))

    def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        time.sleep(min(seconds, self.real))


async def agather(calls: list[Callable[[], Awaitable[T]]]) -> list[T | Exception]:
    """Run the calls concurrently; each result is the value or the exception raised."""
    results: list[T | Exception] = [RuntimeError("not run")] * len(calls)

    async def one(index: int) -> None:
        try:
            results[index] = await calls[index]()
        except Exception as exc:
            results[index] = exc

    async with anyio.create_task_group() as group:
        for index in range(len(calls)):
            group.start_soon(one, index)
    return results


def gather(calls: list[Callable[[], T]]) -> list[T | Exception]:
    """The blocking twin of ``agather``: the calls run on up to 64 threads."""
    results: list[T | Exception] = [RuntimeError("not run")] * len(calls)

    def one(index: int) -> None:
        try:
            results[index] = calls[index]()
        except Exception as exc:
            results[index] = exc

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(64, len(calls) or 1)) as pool:
        list(pool.map(one, range(len(calls))))
    return results


def pool_of(http: httpx.AsyncClient | httpx.Client) -> Any:
    """The httpcore connection pool behind an httpx client (httpcore 1.0 internals)."""
    return http._transport._pool  # type: ignore[union-attr]


def in_flight(http: httpx.AsyncClient | httpx.Client) -> int:
    """RELIABILITY.md §3: "pool in-flight" is ``len(transport._pool._requests)``."""
    return len(pool_of(http)._requests)


def pool_connections(http: httpx.AsyncClient | httpx.Client) -> int:
    return len(pool_of(http)._connections)


def ownerless_connecting(http: httpx.AsyncClient | httpx.Client) -> int:
    """Pool connections still CONNECTING that no queued or active request owns (CL-04)."""
    pool = pool_of(http)
    owned = {id(r.connection) for r in pool._requests if r.connection is not None}
    return sum(1 for c in pool._connections if c.info() == "CONNECTING" and id(c) not in owned)


def watch_event_loop() -> list[str]:
    """Under asyncio: switch the running loop to debug mode and collect what its
    exception handler reports ("Task exception was never retrieved", callbacks that
    raised, ...). Elsewhere (trio, threads) there is nothing to watch: returns []."""
    import asyncio

    reports: list[str] = []
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return reports
    loop.set_debug(True)
    loop.slow_callback_duration = 10.0  # debug mode's slow-callback log is not a failure
    loop.set_exception_handler(lambda _loop, context: reports.append(str(context)))
    return reports


def timed() -> Callable[[], float]:
    """``elapsed = timed(); ...; elapsed()`` in seconds."""
    start = time.monotonic()
    return lambda: time.monotonic() - start


CAPSULE_JSON = (
    b'{"id":"cl-0k3x9a8b7c6d5e4f3g2h1i0j9","status":"running","template":"minimal",'
    b'"vcpus":1,"memory_mb":512}'
)


class StubServer:
    """A tiny threaded loopback server (optionally TLS) that answers every request
    with one capsule and records each TCP connection and request line.

    Used as the self-signed TLS server and as the HTTP proxy of SE-06.
    """

    def __init__(self, ssl_context: Any = None, *, gzip_body: bool = False) -> None:
        import socket
        import threading

        self._ssl = ssl_context
        self._gzip = gzip_body
        self.heads: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.connections = 0
        self.request_lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> StubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()

    def _serve(self) -> None:

        deadline = time.monotonic() + 120
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            try:
                conn.settimeout(2.0)
                stream = conn
                if self._ssl is not None:
                    stream = self._ssl.wrap_socket(conn, server_side=True)
                data = b""
                while b"\r\n\r\n" not in data and len(data) < 65536:
                    chunk = stream.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if data:
                    self.request_lines.append(data.split(b"\r\n", 1)[0].decode("latin-1"))
                    self.heads.append(data.split(b"\r\n\r\n", 1)[0])
                    body = gzip.compress(CAPSULE_JSON) if self._gzip else CAPSULE_JSON
                    encoding = b"Content-Encoding: gzip\r\n" if self._gzip else b""
                    stream.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        + encoding
                        + b"Connection: close\r\nContent-Length: "
                        + str(len(body)).encode()
                        + b"\r\n\r\n"
                        + body
                    )
                if stream is not conn:
                    stream.close()
            except OSError:
                pass
            finally:
                conn.close()


def self_signed_cert(directory: str) -> tuple[str, str] | None:
    """(cert, key) PEM paths for 127.0.0.1 made with the openssl CLI; None without it."""
    import os
    import shutil
    import subprocess

    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    # ``cryptography`` is not a dependency of the project; the openssl CLI is enough.
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    result = subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return (cert, key) if result.returncode == 0 else None


class EndlessJSON(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A chunked (no Content-Length) body of ``mib`` MiB for ``httpx.MockTransport``,
    usable by sync and async clients; it stops yielding once closed."""

    def __init__(self, mib: int) -> None:
        self.mib = mib
        self.closed = False
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        yield b"["
        while not self.closed and self.sent < self.mib:
            self.sent += 1
            yield b" " * (1024 * 1024)  # a fresh object each time, as from a socket

    async def __aiter__(self) -> Any:
        yield b"["
        while not self.closed and self.sent < self.mib:
            self.sent += 1
            yield b" " * (1024 * 1024)  # a fresh object each time, as from a socket

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True
