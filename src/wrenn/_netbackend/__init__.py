"""The one place that touches httpx and httpcore internals (this package).

Every private attribute or function of httpx/httpcore the SDK relies on is used in this
package and listed below (tests/test_netbackend_internals.py checks that each exists in
the installed versions, so an upgrade that moves one fails loudly; pyproject pins
httpcore to the tested minor release). Nothing else in ``src/wrenn`` reaches past their
public API. What it does with them:

* reads the proxy environment variables the way httpx does (``environment_proxies``);
* reads a pool's size and drops its ownerless connections (``pool_size``, ``heal_pool``);
* stops the clients the SDK builds from parsing ``Set-Cookie`` (``skip_cookie_extraction``);
* wraps the network backends of the pools the SDK builds (``sockets.py``): native
  asyncio connections (``asyncio_streams.py``), an attempt's bound for the blocking pool;
* gives those pools a linear request-to-connection assignment (``assignment.py``).
"""

from __future__ import annotations

import httpx
from httpx._utils import get_environment_proxies

from .._logs import logger
from .assignment import linear_assignment as linear_assignment
from .sockets import bound_attempts as bound_attempts
from .sockets import speak_asyncio_natively as speak_asyncio_natively

# (module, dotted attribute) of every private name used here; instance attributes are
# checked on a freshly built transport by the test.
PRIVATE_API = (("httpx._utils", "get_environment_proxies"),)
# Attributes of an httpx transport and its httpcore pool (and pool requests/connections).
TRANSPORT_ATTRIBUTES = ("_pool",)
POOL_ATTRIBUTES = (
    "_network_backend",
    "_connections",
    "_requests",
    "_optional_thread_lock",
    "_max_connections",
    "_max_keepalive_connections",
    "_http2",
    "_assign_requests_to_connections",
    "create_connection",
)
# Attributes of an httpx client.
CLIENT_ATTRIBUTES = ("_cookies",)
POOL_REQUEST_ATTRIBUTES = ("connection", "request", "is_queued", "assign_to_connection")
POOL_CONNECTION_ATTRIBUTES = ("_connection", "_connect_failed")


def environment_proxies() -> dict[str, str | None]:
    """``HTTP(S)_PROXY``/``ALL_PROXY``/``NO_PROXY`` as httpx reads them: mount pattern to
    proxy URL (``None``: no proxy for that pattern)."""
    return get_environment_proxies()


def pool_size(client: httpx.AsyncClient | httpx.Client) -> int | None:
    """``max_connections`` of the pool behind a client, if it has a recognisable one."""
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    size = getattr(pool, "_max_connections", None)
    return size if isinstance(size, int) and size > 0 else None


def heal_pool(client: httpx.AsyncClient | httpx.Client) -> int:
    """Drop pool connections stuck CONNECTING with no request that owns them.

    httpcore 1.0.9 can leave such a connection behind when a queued request is
    cancelled right after another task's call assigned it a new connection: it never
    connects, never closes and counts against ``max_connections`` forever, until
    every call fails with a pool timeout (RELIABILITY.md CL-04). Such a connection has
    no socket, so dropping it from the pool's list is all the cleanup it needs. Reads
    httpcore internals defensively: a transport without them is left alone.
    """
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    connections = getattr(pool, "_connections", None)
    requests = getattr(pool, "_requests", None)
    lock = getattr(pool, "_optional_thread_lock", None)
    if not isinstance(connections, list) or not isinstance(requests, list) or lock is None:
        return 0
    with lock:
        owned = {id(getattr(r, "connection", None)) for r in requests}
        zombies = [
            c
            for c in connections
            if id(c) not in owned
            and getattr(c, "_connection", False) is None
            and getattr(c, "_connect_failed", True) is False
        ]
        for connection in zombies:
            connections.remove(connection)
    if zombies:
        logger.debug("dropped %d ownerless connecting pool connection(s)", len(zombies))
    return len(zombies)


class _UnfilledCookies(httpx.Cookies):
    """Cookies that no response adds to."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


def skip_cookie_extraction(client: httpx.AsyncClient | httpx.Client) -> None:
    """Stop a client we built from offering each response to its cookie jar.

    Our clients keep no cookies: their jar refuses every one. httpx still wraps every
    response and its request in urllib objects for the jar to turn down, about a tenth
    of a small call's client CPU (measured in bench/); here the client's cookies skip
    that step and keep the refusing jar. Nothing is changed on a client whose cookies
    are not where httpx 0.28 keeps them.
    """
    cookies = getattr(client, "_cookies", None)
    if type(cookies) is httpx.Cookies:
        client._cookies = _UnfilledCookies(cookies.jar)
