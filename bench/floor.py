"""The raw-socket floor: the least work a client can do to get the same answers.

Pre-built request bytes, one keep-alive connection per in-flight request, and just
enough parsing of the response (status line and Content-Length) to find the body.
No redirects, retries, timeouts per phase, header objects or error mapping, so no
real SDK can be expected to reach it; it shows how much of a measurement is the
server and the loopback rather than the client.
"""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import urlsplit

_RECV = 256 * 1024


def _request(method: str, url: str, api_key: str, body: bytes = b"") -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    head = (
        f"{method} {parts.path} HTTP/1.1\r\n"
        f"Host: {parts.netloc}\r\n"
        f"X-API-Key: {api_key}\r\n"
        "Accept: application/json\r\n"
    )
    if body or method == "POST":
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return parts.hostname or "127.0.0.1", parts.port or 80, (head + "\r\n").encode() + body


def _content_length(head: bytes) -> int:
    at = head.lower().find(b"\r\ncontent-length:")
    if at < 0:
        raise ValueError("response without Content-Length")
    end = head.find(b"\r\n", at + 2)
    return int(head[at + 17 : end if end >= 0 else len(head)])


def _status(head: bytes) -> int:
    return int(head[9:12])


class SyncFloor:
    """One blocking keep-alive socket."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()

    def send(self, request: bytes) -> tuple[int, bytes]:
        self.sock.sendall(request)
        buffer = self.buffer
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            self._fill()
        head = bytes(buffer[:end])
        total = end + 4 + _content_length(head)
        while len(buffer) < total:
            self._fill()
        body = bytes(buffer[end + 4 : total])
        del buffer[:total]
        return _status(head), body

    def _fill(self) -> None:
        chunk = self.sock.recv(_RECV)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


class AsyncFloorPool:
    """asyncio streams, at most ``size`` connections, handed out through a queue."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port = host, port
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self.free = size  # connections that may still be opened
        self.all: list[asyncio.StreamWriter] = []

    async def _take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.idle.empty() and self.free > 0:
            self.free -= 1
            reader, writer = await asyncio.open_connection(self.host, self.port, limit=_RECV)
            self.all.append(writer)
            return reader, writer
        return await self.idle.get()

    async def send(self, request: bytes) -> tuple[int, bytes]:
        reader, writer = await self._take()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        body = await reader.readexactly(_content_length(head))
        self.idle.put_nowait((reader, writer))
        return _status(head), body

    async def aclose(self) -> None:
        for writer in self.all:
            writer.close()


def build(method: str, url: str, api_key: str, body: bytes = b"") -> tuple[str, int, bytes]:
    """Return (host, port, the full request bytes) for one call."""
    return _request(method, url, api_key, body)
