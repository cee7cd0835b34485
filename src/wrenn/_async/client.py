"""``AsyncWrennClient``: the low-level client of the Wrenn control plane."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING

import httpx

from .._compat import AsyncLock
from .._config import NOT_GIVEN, ClientOptions, resolve_options, updated_options
from .._constants import DEFAULT_MAX_RETRIES, DEFAULT_TOTAL_TIMEOUT
from .._first_access import on_first_access
from ._requester import AsyncRequester
from ._resource import AsyncAPIResource

if TYPE_CHECKING:
    # Imported when first read (the attributes below), so that importing the client
    # loads none of them: tests/test_public_api.py lists the modules it must not load.
    from ._transitions import AsyncTransitionWaiter
    from .capsules import AsyncCapsules
    from .events import AsyncEvents
    from .snapshots import AsyncSnapshots


class AsyncWrennClient:
    """Client for the Wrenn API: capsules, snapshots and events.

    Args:
        api_key: team API key; defaults to the ``WRENN_API_KEY`` environment variable.
        base_url: API root; defaults to ``WRENN_BASE_URL``, else ``https://app.wrenn.dev/api``.
        proxy_domain: host suffix of capsule port URLs; defaults to ``WRENN_PROXY_DOMAIN``.
        timeout: per-attempt timeout. A number of seconds sets every phase (connect,
            read, write, pool) *and* bounds each attempt's whole wall clock: connecting,
            sending, the response head and, for a call that returns a model, the body
            (``WrennTimeoutError`` past it, then retried as any timeout). Calls with a
            longer read budget (a VM boot, a file transfer) get that budget on top. For a
            stream it bounds reaching the response head; the stream's idle bounds apply
            after that. An ``httpx.Timeout`` keeps httpx's meaning: each phase bounds one
            socket operation, so only ``total_timeout`` ends a slow but steady answer.
        max_retries: retries of a failed call that is safe to retry (default 2).
        http_client: an httpx client to send with (its pool and proxies are used as they are).
        default_headers: extra headers sent with every request.
        total_timeout: wall-clock budget of one call, retries included (default 120 s).
        max_response_bytes: largest response body accepted (default 16 MiB).
        limits: connection pool limits of the client's own httpx client.
        verify: TLS verification (``True``, a CA bundle path or an ``ssl.SSLContext``).
        trust_env: honour ``HTTP(S)_PROXY``/``NO_PROXY`` and ``SSL_CERT_FILE`` from the environment.
        allow_insecure_http: do not warn when ``base_url`` is plain http to another host.

    Use it as a context manager, or close it when done. One client serves many
    concurrent calls: threads of the blocking client, tasks of one event loop (the first
    it was used on) for the asyncio/trio client.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | httpx.URL | None = None,
        proxy_domain: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        *,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.AsyncClient | None = None,
        default_headers: Mapping[str, str] | None = None,
        total_timeout: float | None = DEFAULT_TOTAL_TIMEOUT,
        max_response_bytes: int | None = None,
        limits: httpx.Limits | None = None,
        verify: ssl.SSLContext | str | bool = True,
        trust_env: bool = True,
        allow_insecure_http: bool = False,
    ) -> None:
        self._options = resolve_options(
            api_key=api_key,
            base_url=base_url,
            proxy_domain=proxy_domain,
            timeout=timeout,
            total_timeout=total_timeout,
            max_retries=max_retries,
            default_headers=default_headers,
            max_response_bytes=max_response_bytes,
            allow_insecure_http=allow_insecure_http,
        )
        self._requester = AsyncRequester(
            http_client=http_client,
            limits=limits,
            verify=verify,
            trust_env=trust_env,
            api_key=self._options.api_key,
            base_url=self._options.base_url,
        )
        self._owns_requester = True
        self._init_resources()

    def _init_resources(self, original: AsyncWrennClient | None = None) -> None:
        # How the objects that hold only a client (a command stream, a terminal) send.
        self._api = AsyncAPIResource(self)
        # The resources and the transition waiter are built on first access (below).
        # A client initialised again (tests aim a view at another pool) builds them anew.
        for name in ("capsules", "snapshots", "events", "_transitions"):
            self.__dict__.pop(name, None)
        if original is None:
            self._original: AsyncWrennClient | None = None
            self._name_locks: dict[tuple[str | None, str], AsyncLock] = {}
        else:
            # A with_options() copy waits through the original's waiter, so copies
            # and their original hold one event subscription, not one each; and
            # they share its name locks, so get_or_create on a copy and on the
            # original still cannot create one name twice.
            self._original = original._original or original
            self._name_locks = original._name_locks

    @on_first_access
    def capsules(self) -> AsyncCapsules:
        from .capsules import AsyncCapsules

        return AsyncCapsules(self)

    @on_first_access
    def snapshots(self) -> AsyncSnapshots:
        from .snapshots import AsyncSnapshots

        return AsyncSnapshots(self)

    @on_first_access
    def events(self) -> AsyncEvents:
        from .events import AsyncEvents

        return AsyncEvents(self)

    @on_first_access
    def _transitions(self) -> AsyncTransitionWaiter:
        if self._original is not None:
            return self._original._transitions
        from ._transitions import AsyncTransitionWaiter

        return AsyncTransitionWaiter(self)

    def _name_lock(self, namespace: str | None, name: str) -> AsyncLock:
        """One lock per capsule name: concurrent ``get_or_create`` calls of this client
        for one name wait for each other instead of creating twice."""
        lock = self._name_locks.get((namespace, name))
        if lock is None:
            lock = self._name_locks[(namespace, name)] = AsyncLock()
        return lock

    def with_options(
        self,
        *,
        timeout: float | httpx.Timeout | None = NOT_GIVEN,
        total_timeout: float | None = NOT_GIVEN,
        max_retries: int = NOT_GIVEN,
        default_headers: Mapping[str, str] | None = NOT_GIVEN,
        max_response_bytes: int = NOT_GIVEN,
    ) -> AsyncWrennClient:
        """Return a copy with some options changed that shares this client's connections.

        The copy also shares the client's event subscription for lifecycle waits and
        its per-name locks for ``get_or_create``.

        ``timeout`` has the constructor's meaning: a float bounds each attempt's wall
        clock, an ``httpx.Timeout`` each socket operation.

        Closing the copy does not close the shared connections; close the original.
        """
        changes = {
            name: value
            for name, value in (
                ("timeout", timeout),
                ("total_timeout", total_timeout),
                ("max_retries", max_retries),
                ("default_headers", default_headers),
                ("max_response_bytes", max_response_bytes),
            )
            if value is not NOT_GIVEN
        }
        copy = object.__new__(type(self))
        copy._options = updated_options(self._options, **changes)
        copy._requester = self._requester
        copy._owns_requester = False
        copy._init_resources(original=self)
        return copy

    @property
    def http(self) -> httpx.AsyncClient:
        """The underlying httpx client, as in the official SDK: ``client.http.get("/v1/capsules")``.

        Relative URLs resolve against ``base_url``, and the API key is added to each
        request to the API's own origin (scheme, host and port) as it is sent: it is
        never stored in the client's headers, never sent to another origin (an
        absolute URL elsewhere, or a followed redirect). A client passed as
        ``http_client=`` is returned as it was given, without that set-up.
        """
        return self._requester.http

    @property
    def base_url(self) -> str:
        return str(self._options.base_url)

    @property
    def proxy_domain(self) -> str:
        return self._options.proxy_domain

    @property
    def options(self) -> ClientOptions:
        """The resolved options (the API key is masked in its repr)."""
        return self._options

    @property
    def is_closed(self) -> bool:
        return self._requester.closed

    async def aclose(self) -> None:
        """Close the connection pool (a no-op on a ``with_options()`` copy)."""
        if self._owns_requester:
            await self._requester.aclose()

    async def __aenter__(self) -> AsyncWrennClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} base_url={self.base_url!r} api_key={self._options.api_key.masked!r}>"
