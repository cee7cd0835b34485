"""The connection pool of one client: TLS, proxies, the API key's origin, fork and loop guards.

``AsyncTransport`` builds (or adopts) the httpx client every request is sent with and
hands it out only while it may be used: not after ``aclose()``, not from another event
loop, and never across ``os.fork()`` (a child gets a fresh pool of its own). It also
keeps the pool clean after a failed send (``heal``), counts its free connections
(``slots``) and lets a call wait for a free one while the pool moves (``take_slot``).
The requester (``_requester.py``) adds the sending on top.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Generator
from typing import Any

import httpx

from .. import _deadline
from .._compat import AsyncLock, AsyncLoopGuard, AsyncSemaphore
from .._config import (
    Secret,
    default_limits,
    default_ssl_context,
    keepalive_socket_options,
    refuse_all_cookies,
)
from .._constants import MAX_POOL_WAITS
from .._exceptions import WrennClientClosedError, WrennUsageError
from .._retry import RetryBudget

Origin = tuple[str, str, int | None]


def origin_of(url: httpx.URL) -> Origin:
    """Scheme, host and port (``None`` for the scheme's default: httpx normalises it)."""
    return (url.scheme, url.host, url.port)


class APIKeyAuth(httpx.Auth):
    """Adds ``X-API-Key`` to each request as it is sent, if it goes to the API's origin.

    The key is never stored in the httpx client's default headers, so printing the
    client, its headers or its variables cannot reveal it; and a request to any other
    scheme, host or port (an absolute URL given to ``client.http``) goes without it.
    """

    def __init__(self, key: Secret, origin: Origin | None) -> None:
        self._key = key
        self._origin = origin  # None: every request (the SDK's own, built on base_url)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._origin is None or origin_of(request.url) == self._origin:
            request.headers["X-API-Key"] = self._key.reveal()
        yield request


class _KeepKeyAtHome:
    """A request hook that removes our key from a request about to leave the API's origin.

    httpx builds a followed redirect from the previous request's headers and drops
    only ``Authorization`` on a change of origin, so a redirect followed through
    ``client.http`` (``follow_redirects=True``) would carry ``X-API-Key`` to the other
    host. Hooks run for every request sent, redirects included, after the auth flow.
    """

    def __init__(self, key: Secret, origin: Origin) -> None:
        self._key = key
        self._origin = origin

    async def __call__(self, request: httpx.Request) -> None:
        if request.headers.get("X-API-Key") == self._key.reveal() and (
            origin_of(request.url) != self._origin
        ):
            del request.headers["X-API-Key"]


class AsyncTransport:
    """Owns the connection pool of one client and its copies, and guards its use."""

    def __init__(
        self,
        *,
        http_client: httpx.AsyncClient | None,
        limits: httpx.Limits | None,
        verify: ssl.SSLContext | str | bool,
        trust_env: bool,
        api_key: Secret | None = None,
        base_url: httpx.URL | None = None,
    ) -> None:
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise TypeError(
                f"http_client must be an httpx.AsyncClient, not {type(http_client).__name__}"
            )
        # Client-wide, like the pool: every call of the client and its copies draws on it.
        self.budget = RetryBudget()
        self._limits = limits or default_limits()
        self._verify = verify
        self._trust_env = trust_env
        # For ``client.http``: relative URLs resolve against the API, and the key is
        # added per request to the API's origin only (never to the client's headers).
        self._api_key = api_key
        self._base_url = base_url
        self._owns_client = http_client is None
        # The pool the SDK's own calls go to without passing through the httpx client
        # (see ``direct``); None: through the client.
        self._direct: httpx.AsyncHTTPTransport | None = None
        self._own_request_hooks: list[Any] = []
        self._client = http_client if http_client is not None else self._new_client()
        self._pid = os.getpid()
        self._loop_guard = AsyncLoopGuard()
        self._close_lock = AsyncLock()
        self._slots = self._new_slots()
        self.closed = False

    def _new_client(self) -> httpx.AsyncClient:
        # Imported here: it needs httpcore, which httpx itself loads only for a transport.
        from .._netbackend import (
            bound_attempts,
            environment_proxies,
            linear_assignment,
            skip_cookie_extraction,
            speak_asyncio_natively,
        )

        verify = self._verify
        if verify is True:
            verify = default_ssl_context(self._trust_env)
        elif isinstance(verify, str):
            # A CA bundle file or directory (httpx deprecated passing the path itself).
            verify = (
                ssl.create_default_context(capath=verify)
                if os.path.isdir(verify)
                else ssl.create_default_context(cafile=verify)
            )
        transport = httpx.AsyncHTTPTransport(
            verify=verify,
            trust_env=self._trust_env,
            limits=self._limits,
            socket_options=keepalive_socket_options(),
        )
        speak_asyncio_natively(transport)
        bound_attempts(transport)
        linear_assignment(transport)
        # httpx reads HTTP(S)_PROXY/ALL_PROXY/NO_PROXY only when it builds its own
        # transport; ours carries keepalive options, so the proxies are mounted here.
        mounts: dict[str, httpx.AsyncBaseTransport | None] = {}
        if self._trust_env:
            for pattern, proxy in environment_proxies().items():
                mounted = None
                if proxy is not None:
                    mounted = httpx.AsyncHTTPTransport(
                        proxy=proxy,
                        verify=verify,
                        trust_env=self._trust_env,
                        limits=self._limits,
                        socket_options=keepalive_socket_options(),
                    )
                    bound_attempts(mounted)
                mounts[pattern] = mounted
        auth: httpx.Auth | None = None
        hooks: dict[str, list[Any]] = {}
        if self._api_key is not None and self._base_url is not None:
            origin = origin_of(self._base_url)
            auth = APIKeyAuth(self._api_key, origin)
            hooks["request"] = [_KeepKeyAtHome(self._api_key, origin)]
        client = httpx.AsyncClient(
            transport=transport,
            # The Wrenn API needs no cookies, and the capsule port proxy can share the
            # API's origin (wrenn.local) or domain (the platform): a jar would let code
            # in a capsule plant cookies that the client then sends with API calls.
            cookies=refuse_all_cookies(),
            mounts=mounts,
            follow_redirects=False,
            trust_env=self._trust_env,
            base_url=self._base_url if self._base_url is not None else "",
            auth=auth,
            event_hooks=hooks,
        )
        skip_cookie_extraction(client)
        self._direct = None if mounts else transport
        self._own_request_hooks = list(client.event_hooks["request"])
        return client

    def _new_slots(self) -> AsyncSemaphore | None:
        if self._owns_client:
            size: int | None = self._limits.max_connections
        else:
            from .._netbackend import pool_size

            size = pool_size(self._client)
        return AsyncSemaphore(size) if size else None

    @property
    def http(self) -> httpx.AsyncClient:
        return self._client

    @property
    def direct(self) -> httpx.AsyncHTTPTransport | None:
        """The transport to hand the SDK's own requests to, skipping the httpx client.

        Only for a client the SDK built, and only while every URL goes to that one
        transport (no proxy mounted from the environment): then ``client.send`` adds
        nothing the SDK wants. Its auth flow and request hook exist for ``client.http``
        (our requests carry the key only when we add it), it keeps no cookies, and its
        layers (auth, redirects, hooks, a stream wrapper that times the body) cost a
        tenth of a small call. Once someone adds an event hook to ``client.http``,
        calls go through it again, so the hook sees them, as in the official SDK.
        """
        hooks = self._client.event_hooks
        if hooks["response"] or hooks["request"] != self._own_request_hooks:
            return None
        return self._direct

    async def send_request(
        self, client: httpx.AsyncClient, request: httpx.Request, api_key: Secret | None
    ) -> httpx.Response:
        """Send one request of the SDK's own; the response comes back with its body unread.

        ``api_key``: added as ``X-API-Key`` whatever the origin (the SDK's own URLs are
        built on ``base_url``); None sends no key at all, not even the httpx client's.
        """
        direct = self.direct
        if direct is not None:
            if api_key is not None:
                request.headers["X-API-Key"] = api_key.reveal()
            response = await direct.handle_async_request(request)
            response.request = request
            return response
        return await client.send(
            request,
            auth=APIKeyAuth(api_key, None) if api_key is not None else None,
            stream=True,
            follow_redirects=False,
        )

    def ensure_usable(self) -> httpx.AsyncClient:
        """Return the client to send with, after checking closed, event loop and fork."""
        if self.closed:
            raise WrennClientClosedError("client_closed", "the client has been closed")
        if not self._loop_guard.check():
            raise WrennUsageError(
                "wrong_event_loop",
                "this async client is bound to the event loop it was first used on; "
                "create one client per event loop (e.g. per asyncio.run() call)",
            )
        if os.getpid() != self._pid:
            if not self._owns_client:
                raise WrennUsageError(
                    "used_after_fork",
                    "the client was created before os.fork() with a caller-supplied "
                    "http_client; create a new client in the child process",
                )
            # The child must never share the parent's sockets: responses would cross.
            # The parent's pool objects are dropped, not closed, so the parent's
            # connections stay intact.
            self._client = self._new_client()
            self._loop_guard = AsyncLoopGuard()
            self._slots = self._new_slots()
            self._pid = os.getpid()
        return self._client

    @staticmethod
    async def take_slot(
        slots: AsyncSemaphore,
        pool_timeout: float | None,
        deadline: float | None,
        attempt_deadline: float | None,
    ) -> bool:
        """Wait for one of the pool's connections, for as long as the pool makes progress.

        A queue of thousands of calls on a small pool moves slowly but surely: each wait
        that saw a connection come free is followed by another, within the call's
        deadline. Only a whole pool timeout without any connection coming free (a stuck
        pool) or the deadline ends the wait.
        """
        for _ in range(MAX_POOL_WAITS):
            seen = slots.releases
            window = _deadline.pool_wait_window(pool_timeout, deadline, attempt_deadline)
            if window is not None and window <= 0:
                return False
            if await slots.acquire(window):
                return True
            if slots.releases == seen:
                return False
        return False

    @staticmethod
    def heal(client: httpx.AsyncClient) -> None:
        """After a failed or cancelled send: drop the pool's ownerless connections."""
        from .. import _netbackend  # loaded already: a send went through httpcore

        _netbackend.heal_pool(client)

    async def aclose(self) -> None:
        async with self._close_lock:
            if self.closed:
                return
            self.closed = True
            if self._owns_client:
                await self._client.aclose()
