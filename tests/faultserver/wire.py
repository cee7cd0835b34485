"""Byte-level HTTP/1.1 on asyncio streams: parse requests, write raw responses.

Deliberately hand-written instead of h11: faults need responses that no
well-behaved library would emit (lying Content-Length, RST mid-body, headers
and then silence), and the request target must be logged byte for byte.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import dataclass
from http import HTTPStatus

__all__ = [
    "MAX_BODY",
    "MAX_HEAD",
    "RawRequest",
    "WireError",
    "abort_with_rst",
    "read_body",
    "read_head",
    "reason_phrase",
    "response_head",
]

MAX_HEAD = 64 * 1024
# Request bodies are read and counted but only the first 64 KiB is kept, so this
# bound is about time, not memory.
MAX_BODY = 512 * 1024 * 1024
_CHUNK = 64 * 1024


class WireError(Exception):
    """The client sent something that is not HTTP/1.1; the connection is closed."""


@dataclass(frozen=True)
class RawRequest:
    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for k, v in self.headers:
            if k.lower() == lname:
                return v
        return None

    def has_token(self, name: str, token: str) -> bool:
        """True if comma-separated header ``name`` contains ``token`` (case-insensitive)."""
        value = self.header(name) or ""
        return token.lower() in (t.strip().lower() for t in value.split(","))

    @property
    def wants_close(self) -> bool:
        if self.version == "HTTP/1.0":
            return not self.has_token("connection", "keep-alive")
        return self.has_token("connection", "close")

    @property
    def is_websocket(self) -> bool:
        return self.has_token("upgrade", "websocket")


async def read_head(reader: asyncio.StreamReader, idle_timeout: float) -> RawRequest | None:
    """Read one request head. ``None`` on a clean EOF between requests."""
    try:
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), idle_timeout)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise WireError("connection closed inside a request head") from exc
    except asyncio.LimitOverrunError as exc:
        raise WireError("request head too large") from exc
    except asyncio.TimeoutError:
        return None
    lines = raw[:-4].decode("latin-1").split("\r\n")
    # Tolerate stray CRLFs before a request line (RFC 9112 §2.2).
    while lines and not lines[0]:
        lines.pop(0)
    parts = lines[0].split(" ") if lines else []
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise WireError(f"bad request line {lines[0][:80] if lines else ''!r}")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise WireError(f"bad header line {line[:80]!r}")
        headers.append((name, value.strip(" \t")))
    return RawRequest(parts[0], parts[1], parts[2], tuple(headers))


async def read_body(
    reader: asyncio.StreamReader,
    req: RawRequest,
    *,
    keep: int,
    limit: int | None = None,
    timeout: float = 60.0,
) -> tuple[bytes, int]:
    """Read the request body; return (first ``keep`` bytes, total size).

    ``limit`` stops reading after that many body bytes (used to reset a
    connection half-way through an upload).
    """
    kept = bytearray()
    total = 0
    cap = MAX_BODY if limit is None else min(limit, MAX_BODY)

    def take(data: bytes) -> None:
        nonlocal total
        if len(kept) < keep:
            kept.extend(data[: keep - len(kept)])
        total += len(data)

    te = (req.header("transfer-encoding") or "").lower()
    if "chunked" in te:
        # Every chunk carries at least one byte, so MAX_BODY bounds the loop.
        for _ in range(MAX_BODY):
            line = await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)
            size = _parse_int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # Trailer section: lines until an empty one.
                for _ in range(100):
                    if await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout) == b"\r\n":
                        break
                break
            remaining = size
            while remaining:
                data = await asyncio.wait_for(reader.read(min(remaining, _CHUNK)), timeout)
                if not data:
                    raise WireError("connection closed inside a chunk")
                take(data)
                remaining -= len(data)
                if total >= cap:
                    return bytes(kept), total
            await asyncio.wait_for(reader.readexactly(2), timeout)
        return bytes(kept), total
    length = _parse_int((req.header("content-length") or "0").encode("latin-1"), 10)
    remaining = min(length, cap)
    while remaining:
        data = await asyncio.wait_for(reader.read(min(remaining, _CHUNK)), timeout)
        if not data:
            raise WireError("connection closed inside a body")
        take(data)
        remaining -= len(data)
    return bytes(kept), total


def _parse_int(text: bytes, base: int) -> int:
    try:
        value = int(text, base)
    except ValueError as exc:
        raise WireError(f"bad length {text[:20]!r}") from exc
    if value < 0:
        raise WireError("negative length")
    return value


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def response_head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason_phrase(status)}"]
    lines.extend(f"{k}: {v}" for k, v in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def abort_with_rst(writer: asyncio.StreamWriter) -> None:
    """Close the TCP connection with RST instead of FIN.

    SO_LINGER with a zero timeout makes close() discard unsent data and send
    RST, which the client sees as ECONNRESET (httpx ``ReadError``), unlike a
    FIN that looks like a normal end of stream.
    """
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()
