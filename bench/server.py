"""A fast loopback HTTP/1.1 server that answers like the Wrenn control plane.

Run as its own process: ``python bench/server.py [--list-sizes 1000,10000]``. It
binds 127.0.0.1 on a free port and prints one JSON line ``{"port": N}`` once it
accepts connections; it exits on SIGTERM/SIGINT or when its stdin closes (so it
cannot outlive a harness that died).

Every answer is a pre-encoded byte string: the server does no JSON work per request,
so the clients' own cost is what the benchmarks see. Routes:

- ``GET  [/lN]/v1/capsules/{id}`` -> 200, one capsule
- ``GET  [/lN]/v1/capsules``      -> 200, a list of N capsules (10 without a prefix)
- ``POST [/lN]/v1/capsules``      -> 201, one capsule (the request body is read, not parsed)

The ``/lN`` prefix rides in the clients' ``base_url``, which lets one server serve
lists of several sizes to unmodified SDK calls. A request without ``X-API-Key`` gets
401, which proves every client really sends its key.
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import gc
import json
import re
import signal
import socket
import sys
import threading

from payloads import capsule_list, go_json, one_capsule

MAX_HEAD = 64 * 1024
_PREFIX = re.compile(rb"^/l(\d+)(/.*)$")


def response(status: str, body: bytes) -> bytes:
    """A complete HTTP/1.1 response with Go net/http's header set."""
    head = (
        f"HTTP/1.1 {status}\r\n"
        "Content-Type: application/json\r\n"
        f"Date: {email.utils.formatdate(usegmt=True)}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


def error(status: str, code: str, message: str) -> bytes:
    return response(status, go_json({"error": {"code": code, "message": message}}))


class Routes:
    """All answers, encoded at start-up."""

    def __init__(self, list_sizes: list[int]) -> None:
        one = one_capsule()
        self.get_one = response("200 OK", one)
        self.created = response("201 Created", one)
        self.lists = {size: response("200 OK", capsule_list(size)) for size in list_sizes}
        self.lists.setdefault(10, response("200 OK", capsule_list(10)))
        self.unauthorized = error("401 Unauthorized", "unauthorized", "invalid API key")
        self.not_found = error("404 Not Found", "not_found", "resource not found")
        self.bad = error("400 Bad Request", "invalid_request", "malformed request")

    def answer(self, method: bytes, target: bytes, authorized: bool) -> bytes:
        if not authorized:
            return self.unauthorized
        size = 10
        match = _PREFIX.match(target)
        if match:
            size, target = int(match.group(1)), match.group(2)
        path = target.split(b"?", 1)[0]
        if path == b"/v1/capsules":
            if method == b"GET":
                return self.lists.get(size, self.not_found)
            if method == b"POST":
                return self.created
        elif path.startswith(b"/v1/capsules/") and method == b"GET" and path.count(b"/") == 3:
            return self.get_one
        return self.not_found


class Connection(asyncio.Protocol):
    """One keep-alive connection; parses just enough of each request to route it."""

    def __init__(self, routes: Routes) -> None:
        self.routes = routes
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self._fail()
                return
            head = bytes(self.buffer[:end]).lower()
            length = 0
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                line_end = head.find(b"\r\n", at + 2)
                value = head[at + 17 : line_end if line_end >= 0 else len(head)].strip()
                if not value.isdigit():
                    self._fail()
                    return
                length = int(value)
            elif b"\r\ntransfer-encoding:" in head:
                self._fail()  # no client under test streams a request body
                return
            if len(self.buffer) < end + 4 + length:
                return  # the body is still arriving
            request_line = head.split(b"\r\n", 1)[0].split(b" ")
            del self.buffer[: end + 4 + length]
            if len(request_line) != 3:
                self._fail()
                return
            # The head was lowercased as a whole; that is harmless for routing, since
            # every route and capsule id is lowercase already.
            method = request_line[0].upper()
            self.transport.write(
                self.routes.answer(method, request_line[1], b"\r\nx-api-key:" in head)
            )
            if b"\r\nconnection: close" in head:
                self.transport.close()
                return

    def _fail(self) -> None:
        assert self.transport is not None
        self.transport.write(self.routes.bad)
        self.transport.close()


async def serve(list_sizes: list[int], port: int) -> None:
    loop = asyncio.get_running_loop()
    routes = Routes(list_sizes)
    gc.collect()
    gc.freeze()  # the multi-megabyte bodies never need scanning again
    server = await loop.create_server(
        lambda: Connection(routes), "127.0.0.1", port, backlog=4096, reuse_address=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # A harness that dies without stopping us closes our stdin: exit then too.
    threading.Thread(
        target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)), daemon=True
    ).start()
    sock: socket.socket = server.sockets[0]
    print(json.dumps({"port": sock.getsockname()[1]}), flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--list-sizes", default="1000,10000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.list_sizes.split(",") if s]
    asyncio.run(serve(sizes, args.port))


if __name__ == "__main__":
    main()
