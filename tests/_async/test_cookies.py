"""The client keeps no cookies: what a server (or a capsule behind the port proxy, which
may share the API's origin) sets is never sent back. Over a real loopback socket."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.helpers import API_KEY, CAPSULE
from wrenn import AsyncWrennClient

pytestmark = pytest.mark.anyio


class CookieSetter(BaseHTTPRequestHandler):
    """Answers every GET with a capsule and a cookie, and records the Cookie headers."""

    seen: list[str | None]

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Cookie"))
        body = json.dumps(CAPSULE).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Set-Cookie", "planted=1; Path=/")
        self.send_header("Set-Cookie", "wide=1; Path=/; Domain=127.0.0.1")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def cookie_server() -> Iterator[tuple[str, list[str | None]]]:
    seen: list[str | None] = []
    handler = type("Handler", (CookieSetter,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


async def test_cookies_a_server_sets_are_never_sent_back(
    cookie_server: tuple[str, list[str | None]],
) -> None:
    base_url, seen = cookie_server
    async with AsyncWrennClient(api_key=API_KEY, base_url=base_url) as client:
        offered: list[object] = []
        # Nothing is even offered to the jar (it would refuse it anyway): httpx's urllib
        # round trip for it cost a tenth of a small call's CPU.
        client.http.cookies.jar.extract_cookies = lambda *args: offered.append(args)  # type: ignore[method-assign]
        for _ in range(3):
            await client.capsules.get(CAPSULE["id"])
        assert len(client.http.cookies) == 0
        assert offered == []
        await client.http.get("/v1/capsules")  # the official SDK's raw client: the same
    assert seen == [None, None, None, None]
