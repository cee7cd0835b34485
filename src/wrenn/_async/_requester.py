"""The one path every HTTP call takes: build, send, retry, map errors, read the body.

Resources never touch httpx themselves; they describe a call (method, path, body,
accepted statuses, timeouts) and receive either a fully read ``RawResponse`` or, for
streams, an open ``httpx.Response`` whose status is already known to be good.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import AsyncIterator, Generator, Mapping
from typing import Any

import httpx
from httpx._utils import get_environment_proxies

from .._compat import (
    AsyncAttemptTimer,
    AsyncCleanupScope,
    AsyncLock,
    AsyncLoopGuard,
    AsyncSemaphore,
    allow_in_event_loop,
    asleep,
)
from .._config import (
    RETRY_COUNT_HEADER,
    USER_AGENT,
    ClientOptions,
    Secret,
    default_limits,
    default_ssl_context,
    keepalive_socket_options,
)
from .._exceptions import (
    WrennClientClosedError,
    WrennConnectionError,
    WrennError,
    WrennRateLimitError,
    WrennResponseTooLargeError,
    WrennTimeoutError,
    WrennUsageError,
    error_from_response,
)
from .._logs import logger
from .._responses import RawResponse
from .._retry import (
    RetryBudget,
    is_idempotent,
    parse_retry_after,
    retry_after_too_long,
    retry_delay,
    should_retry_status,
)
from .._tracing import call_span

_Origin = tuple[str, str, int | None]


def _origin(url: httpx.URL) -> _Origin:
    """Scheme, host and port (``None`` for the scheme's default: httpx normalises it)."""
    return (url.scheme, url.host, url.port)


class _APIKeyAuth(httpx.Auth):
    """Adds ``X-API-Key`` to each request as it is sent, if it goes to the API's origin.

    The key is never stored in the httpx client's default headers, so printing the
    client, its headers or its variables cannot reveal it; and a request to any other
    scheme, host or port (an absolute URL given to ``client.http``) goes without it.
    """

    def __init__(self, key: Secret, origin: _Origin | None) -> None:
        self._key = key
        self._origin = origin  # None: every request (the SDK's own, built on base_url)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._origin is None or _origin(request.url) == self._origin:
            request.headers["X-API-Key"] = self._key.reveal()
        yield request


class _KeepKeyAtHome:
    """A request hook that removes our key from a request about to leave the API's origin.

    httpx builds a followed redirect from the previous request's headers and drops
    only ``Authorization`` on a change of origin, so a redirect followed through
    ``client.http`` (``follow_redirects=True``) would carry ``X-API-Key`` to the other
    host. Hooks run for every request sent, redirects included, after the auth flow.
    """

    def __init__(self, key: Secret, origin: _Origin) -> None:
        self._key = key
        self._origin = origin

    async def __call__(self, request: httpx.Request) -> None:
        if request.headers.get("X-API-Key") == self._key.reveal() and (
            _origin(request.url) != self._origin
        ):
            del request.headers["X-API-Key"]


class AsyncBodyStream(httpx.AsyncByteStream):
    """A request body read from the caller's iterable, closable after a failed send."""

    def __init__(self, content: Any) -> None:
        self._iterator = content.__aiter__()

    def __aiter__(self) -> AsyncBodyStream:
        """The stream is its own iterator (no generator is left behind)."""
        return self

    async def __anext__(self) -> bytes:
        """The caller's next chunk, as bytes."""
        chunk = await self._iterator.__anext__()
        return bytes(chunk)

    async def aclose(self) -> None:
        """Close the caller's iterator, if it can be closed."""
        close = getattr(self._iterator, "aclose", None)
        if close is not None:
            await close()


class AsyncRequester:
    """Owns the connection pool and sends every request of one client and its copies."""

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
        self._limits = limits or default_limits()
        self._verify = verify
        self._trust_env = trust_env
        # For ``client.http``: relative URLs resolve against the API, and the key is
        # added per request to the API's origin only (never to the client's headers).
        self._api_key = api_key
        self._base_url = base_url
        self._owns_client = http_client is None
        self._client = http_client if http_client is not None else self._new_client()
        self._pid = os.getpid()
        self._loop_guard = AsyncLoopGuard()
        self._close_lock = AsyncLock()
        self._slots = self._new_slots()
        self.budget = RetryBudget()
        self.closed = False

    def _new_client(self) -> httpx.AsyncClient:
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
        # Imported here: it needs httpcore, which httpx itself loads only for a transport.
        from .._netbackend import bound_attempts, cache_readable_socket

        cache_readable_socket(transport)
        bound_attempts(transport)
        # httpx reads HTTP(S)_PROXY/ALL_PROXY/NO_PROXY only when it builds its own
        # transport; ours carries keepalive options, so the proxies are mounted here.
        mounts: dict[str, httpx.AsyncBaseTransport | None] = {}
        if self._trust_env:
            for pattern, proxy in get_environment_proxies().items():
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
            origin = _origin(self._base_url)
            auth = _APIKeyAuth(self._api_key, origin)
            hooks["request"] = [_KeepKeyAtHome(self._api_key, origin)]
        return httpx.AsyncClient(
            transport=transport,
            mounts=mounts,
            follow_redirects=False,
            trust_env=self._trust_env,
            base_url=self._base_url if self._base_url is not None else "",
            auth=auth,
            event_hooks=hooks,
        )

    def _new_slots(self) -> AsyncSemaphore | None:
        size = self._limits.max_connections if self._owns_client else _pool_size(self._client)
        return AsyncSemaphore(size) if size else None

    @property
    def http(self) -> httpx.AsyncClient:
        return self._client

    # --- lifecycle ------------------------------------------------------------------

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

    async def aclose(self) -> None:
        async with self._close_lock:
            if self.closed:
                return
            self.closed = True
            if self._owns_client:
                await self._client.aclose()

    # --- requests -------------------------------------------------------------------

    def _build(
        self,
        client: httpx.AsyncClient,
        options: ClientOptions,
        method: str,
        path: str,
        attempt: int,
        timeout: httpx.Timeout,
        *,
        params: Mapping[str, str] | None,
        content: Any,
        files: Any,
        data: Any,
        headers: Mapping[str, str] | None,
    ) -> httpx.Request:
        merged = None
        if headers or options.default_headers:
            merged = {"User-Agent": USER_AGENT, **options.default_headers, **(headers or {})}
            merged[RETRY_COUNT_HEADER] = str(attempt)
        request = client.build_request(
            method,
            _parsed_url(options.url(path)),
            params=params,
            content=content,
            files=files,
            data=data,
            headers=merged,
            # The timeout as httpx stores it on the request: passing it ready-made skips
            # httpx copying the Timeout object again for every request.
            extensions={"timeout": timeout.as_dict()},
        )
        if merged is None:
            # Only our own two ASCII headers: setting them on the built request gives
            # the same headers, in the same order, as httpx merging a dict into the
            # client's defaults, at a third of the cost.
            request.headers["User-Agent"] = USER_AGENT
            request.headers[RETRY_COUNT_HEADER] = str(attempt)
        if content is not None and not isinstance(content, (bytes, str)):
            # A streamed body: iterate it through an object we can close if the send
            # fails, so no half-consumed generator is left for the garbage collector.
            request.stream = AsyncBodyStream(content)
        return request

    async def request(
        self,
        options: ClientOptions,
        method: str,
        path: str,
        *,
        ok: tuple[int, ...] = (200,),
        params: Mapping[str, str] | None = None,
        content: Any = None,
        files: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        read_timeout: float | None = None,
        missing_ok_on_retry: bool = False,
        replayable: bool = True,
    ) -> RawResponse:
        """Send one API call, retrying per policy, and return its fully read response.

        ``missing_ok_on_retry`` makes a 404 on a *retry* count as success: a DELETE whose
        first attempt timed out may well have been applied already.
        """
        with call_span(method, path) as span:
            response = await self._send(
                options,
                method,
                path,
                ok=ok,
                params=params,
                content=content,
                files=files,
                data=data,
                headers=headers,
                read_timeout=read_timeout,
                missing_ok_on_retry=missing_ok_on_retry,
                replayable=replayable,
                stream=False,
            )
            span.done(response)
        assert isinstance(response, RawResponse)
        return response

    async def open_stream(
        self,
        options: ClientOptions,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        content: Any = None,
        files: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        read_timeout: float | None = None,
        replayable: bool = True,
        ok: tuple[int, ...] = (200,),
        idle_timeout: float | None = None,
    ) -> httpx.Response:
        """Open a streamed response with a status in ``ok``; the caller must close it.

        Retries happen only until a good status arrives; once bytes of the body flow,
        a failure is the stream's to report. ``idle_timeout`` replaces the read timeout
        exactly (``read_timeout`` only ever lengthens it): it bounds the silence between
        two chunks of the stream.
        """
        with call_span(method, path) as span:
            response = await self._send(
                options,
                method,
                path,
                ok=ok,
                params=params,
                content=content,
                files=files,
                data=data,
                headers=headers,
                read_timeout=read_timeout,
                missing_ok_on_retry=False,
                replayable=replayable,
                stream=True,
                idle_timeout=idle_timeout,
            )
            span.done(response)  # a stream's span lasts until the response is closed
        assert isinstance(response, httpx.Response)
        return response

    async def _send(
        self,
        options: ClientOptions,
        method: str,
        path: str,
        *,
        ok: tuple[int, ...],
        params: Mapping[str, str] | None,
        content: Any,
        files: Any,
        data: Any,
        headers: Mapping[str, str] | None,
        read_timeout: float | None,
        missing_ok_on_retry: bool,
        replayable: bool,
        stream: bool,
        idle_timeout: float | None = None,
    ) -> RawResponse | httpx.Response:
        allow_in_event_loop(method, path)
        started = time.monotonic()
        deadline = None if options.total_timeout is None else started + options.total_timeout
        if read_timeout is not None and deadline is not None:
            # A call that legitimately takes long (a VM boot, an exec) gets a deadline
            # that fits its read budget instead of failing at the default.
            deadline = max(
                deadline, started + read_timeout + (options.timeout.connect or 0.0) + 5.0
            )
        base_timeout = options.timeout
        if read_timeout is not None:
            base_timeout = httpx.Timeout(
                connect=base_timeout.connect,
                read=max(read_timeout, base_timeout.read or 0.0),
                write=base_timeout.write,
                pool=base_timeout.pool,
            )
        # A float ``timeout`` bounds each attempt's wall clock (an httpx.Timeout only
        # each socket operation). A call with a longer read budget gets that on top.
        attempt_timeout = options.attempt_timeout
        if attempt_timeout is not None and read_timeout is not None:
            attempt_timeout += read_timeout
        max_retries = options.max_retries if replayable else 0
        scrub = options.api_key.scrub
        attempt = 0
        while True:
            client = self.ensure_usable()
            timeout = _clamp(base_timeout, deadline)
            if idle_timeout is not None:
                # The deadline bounds opening the stream, not how long it may stay open.
                timeout = httpx.Timeout(
                    connect=timeout.connect,
                    read=idle_timeout,
                    write=timeout.write,
                    pool=timeout.pool,
                )
            request = self._build(
                client,
                options,
                method,
                path,
                attempt,
                timeout,
                params=params,
                content=content,
                files=files,
                data=data,
                headers=headers,
            )
            sent_at = time.monotonic()
            try:
                outcome = await self._attempt(
                    client,
                    request,
                    options,
                    timeout,
                    deadline,
                    method,
                    path,
                    ok=ok if stream else None,
                    attempt_timeout=attempt_timeout,
                )
            except WrennConnectionError as error:
                if await self._may_retry_transport(error, method, attempt, max_retries, deadline):
                    attempt += 1
                    continue
                error.retries_taken = attempt
                raise
            except WrennError as error:
                error.retries_taken = attempt
                raise

            if isinstance(outcome, httpx.Response):
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug(
                        "%s %s -> %s (attempt %d, streaming)",
                        method,
                        path,
                        outcome.status_code,
                        attempt + 1,
                    )
                self.budget.refund()
                return outcome
            status, response_headers, body = outcome
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "%s %s -> %s (attempt %d, %.1f ms, %d bytes)",
                    method,
                    path,
                    status,
                    attempt + 1,
                    (time.monotonic() - sent_at) * 1000,
                    len(body),
                )
            if status in ok or (missing_ok_on_retry and status == 404 and attempt > 0):
                self.budget.refund()
                # httpx's headers as they are (a case-insensitive mapping): copying them
                # into a dict cost more than every later lookup together.
                return RawResponse(status, response_headers, body, attempt)

            api_error = error_from_response(status, response_headers, body, scrub=scrub)
            # The raw body may echo the request's headers (a proxy's error page): keep
            # it out of this frame's locals, which tracebacks with locals would print.
            del outcome, body
            api_error.retries_taken = attempt
            retry_after = parse_retry_after(response_headers)
            if isinstance(api_error, WrennRateLimitError):
                api_error.retry_after = retry_after
            if (
                should_retry_status(method, status, response_headers)
                and not retry_after_too_long(retry_after)
                and attempt < max_retries
            ):
                delay = retry_delay(attempt, response_headers)
                if _fits(delay, deadline) and self.budget.acquire():
                    logger.info(
                        "%s %s -> %s; retrying in %.2f s (%d of %d)",
                        method,
                        path,
                        status,
                        delay,
                        attempt + 1,
                        max_retries,
                    )
                    await asleep(delay)
                    attempt += 1
                    continue
            raise api_error

    async def _attempt(
        self,
        client: httpx.AsyncClient,
        request: httpx.Request,
        options: ClientOptions,
        timeout: httpx.Timeout,
        deadline: float | None,
        method: str,
        path: str,
        *,
        ok: tuple[int, ...] | None,
        attempt_timeout: float | None = None,
    ) -> httpx.Response | tuple[int, httpx.Headers, bytes]:
        """Send one attempt. A stream with a status in ``ok`` comes back open; anything
        else is read fully and closed. Transport failures raise ``WrennConnectionError``.

        ``attempt_timeout`` bounds the attempt's wall clock (``WrennTimeoutError`` past
        it): everything up to the end of the body, or for a stream up to its response
        head (the stream's own idle bounds take over from there).

        A unary attempt holds one of the client's pool slots while it runs, so no more
        requests enter httpcore's pool than it has connections (none queue inside it).
        """
        scrub = options.api_key.scrub
        slots = self._slots if ok is None else None
        sent = False
        attempt_deadline = _attempt_deadline(attempt_timeout)
        timer = AsyncAttemptTimer(attempt_timeout)
        try:
            with timer:
                if slots is not None and not await slots.acquire(timeout.pool):
                    raise WrennTimeoutError(
                        f"{method} {path}: no connection became free in the pool in time",
                        request_sent=False,
                    )
                try:
                    sent = True  # from here on the server may see the request
                    try:
                        response = await client.send(
                            request,
                            # The SDK's own URLs are built on base_url: no origin check.
                            auth=_APIKeyAuth(options.api_key, None),
                            stream=True,
                            follow_redirects=False,
                        )
                    except BaseException as exc:
                        _heal_pool(client)
                        if isinstance(request.stream, AsyncBodyStream):
                            with AsyncCleanupScope(1.0):
                                await request.stream.aclose()
                        if isinstance(exc, httpx.TransportError):
                            raise _transport_error(exc, method, path, scrub) from exc
                        raise
                    if ok is not None and response.status_code in ok:
                        return response
                    try:
                        body = await _read_body(
                            response,
                            deadline,
                            options.max_response_bytes,
                            method,
                            path,
                            attempt_deadline=attempt_deadline,
                        )
                    except httpx.TransportError as exc:
                        raise _transport_error(exc, method, path, scrub) from exc
                    finally:
                        await response.aclose()
                        _unlink_stream(response)
                    return response.status_code, response.headers, body
                finally:
                    if slots is not None:
                        slots.release()
        except WrennTimeoutError as exc:
            # The blocking client's bound surfaces as a socket timeout: say which one.
            if attempt_timeout is not None and timer.expired:
                raise _attempt_expired(method, path, attempt_timeout, exc.request_sent) from exc
            raise
        # Reached only when the event loop's timer ended the attempt: its scope swallows
        # the cancellation it used (the blocking client's bound raises inside instead).
        raise _attempt_expired(method, path, attempt_timeout, sent)

    async def _may_retry_transport(
        self,
        error: WrennConnectionError,
        method: str,
        attempt: int,
        max_retries: int,
        deadline: float | None,
    ) -> bool:
        """Sleep and return True if a failed attempt should be made again."""
        if attempt >= max_retries or not _retryable_transport(error, method):
            return False
        delay = retry_delay(attempt, None)
        if not _fits(delay, deadline):
            return False
        if not self.budget.acquire(timeout=isinstance(error, WrennTimeoutError)):
            return False
        logger.info(
            "%s; retrying in %.2f s (%d of %d)", error.message, delay, attempt + 1, max_retries
        )
        await asleep(delay)
        return True


async def _read_body(
    response: httpx.Response,
    deadline: float | None,
    limit: int,
    method: str,
    path: str,
    *,
    attempt_deadline: float | None = None,
) -> bytes:
    """Read the whole body, enforcing the size cap and the deadlines between chunks.

    httpx's read timeout is per chunk, so a server that drips one byte at a time would
    never trip it; checking the deadline as chunks arrive bounds the whole call. The
    attempt's own deadline is checked too, for a blocking client sending through a
    caller's ``http_client`` (whose sockets ``bound_attempts`` could not wrap).
    """
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(response.status_code, limit)
    chunks: list[bytes] = []
    size = 0
    iterator = response.aiter_bytes()
    try:
        async for chunk in iterator:
            size += len(chunk)
            if size > limit:
                raise _too_large(response.status_code, limit)
            chunks.append(chunk)
            if deadline is not None and time.monotonic() > deadline:
                raise WrennTimeoutError(
                    f"{method} {path}: the call deadline passed while reading the response"
                )
            if attempt_deadline is not None and time.monotonic() > attempt_deadline:
                raise WrennTimeoutError(
                    f"{method} {path}: the attempt's timeout passed while reading the response"
                )
    except BaseException:
        # Stopping early: close the response and unwind httpx's nested body generators
        # now, so none is left for the garbage collector (trio warns about those).
        with AsyncCleanupScope(1.0):
            await response.aclose()
            await finish_iterator(iterator)
        raise
    return b"".join(chunks)


_SPENT_STREAM = httpx.ByteStream(b"")


def _unlink_stream(response: httpx.Response) -> None:
    """Break the reference cycle between a closed response and its body stream.

    httpx wraps every body stream in one that points back at its response (to record
    ``elapsed`` when closed). That cycle keeps the response, its request and httpcore's
    per-request objects (some 40 of them) alive until the garbage collector runs, so
    every call fed the collector. With the body read and the response closed the stream
    has no further use; replacing it lets reference counting free everything at once.
    """
    response.stream = _SPENT_STREAM


def _heal_pool(client: httpx.AsyncClient) -> int:
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


# Parsed request URLs, by URL string. Parsing and validating a URL is the largest
# single cost httpx adds per request (tens of microseconds), and calls repeat the same
# few URLs (a status poll asks for one capsule again and again). ``httpx.URL`` is
# immutable, so one parsed object can back any number of requests. Bounded: emptied
# when full rather than tracking recency, which costs nothing per hit.
_URL_CACHE: dict[str, httpx.URL] = {}
_URL_CACHE_SIZE = 512


def _parsed_url(url: str) -> httpx.URL:
    parsed = _URL_CACHE.get(url)
    if parsed is None:
        parsed = httpx.URL(url)  # an invalid URL raises here, as inside build_request
        if len(_URL_CACHE) >= _URL_CACHE_SIZE:
            _URL_CACHE.clear()
        _URL_CACHE[url] = parsed
    return parsed


def _pool_size(client: httpx.AsyncClient) -> int | None:
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    size = getattr(pool, "_max_connections", None)
    return size if isinstance(size, int) and size > 0 else None


def _too_large(status: int, limit: int) -> WrennResponseTooLargeError:
    return WrennResponseTooLargeError(
        "response_too_large",
        f"the response body exceeds max_response_bytes ({limit} bytes)",
        status,
    )


def _clamp(timeout: httpx.Timeout, deadline: float | None) -> httpx.Timeout:
    """Shrink every phase so that no single wait can outlive the call's deadline."""
    if deadline is None:
        return timeout
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise WrennTimeoutError(
            "the call deadline passed before the request could be sent", request_sent=False
        )

    def phase(value: float | None) -> float:
        return remaining if value is None else min(value, remaining)

    return httpx.Timeout(
        connect=phase(timeout.connect),
        read=phase(timeout.read),
        write=phase(timeout.write),
        pool=phase(timeout.pool),
    )


def _attempt_deadline(attempt_timeout: float | None) -> float | None:
    return None if attempt_timeout is None else time.monotonic() + attempt_timeout


def _attempt_expired(
    method: str, path: str, attempt_timeout: float | None, request_sent: bool
) -> WrennTimeoutError:
    return WrennTimeoutError(
        f"{method} {path}: the attempt did not finish within its timeout "
        f"({attempt_timeout or 0:g} s)",
        request_sent=request_sent,
    )


def _fits(delay: float, deadline: float | None) -> bool:
    """A retry whose wait would pass the deadline is not started."""
    return deadline is None or time.monotonic() + delay < deadline


def _retryable_transport(error: WrennConnectionError, method: str) -> bool:
    if error.code in ("tls_error", "invalid_request_setup"):
        return False  # neither a bad certificate nor a malformed request improves by asking again
    return is_idempotent(method) or not error.request_sent


def _transport_error(
    exc: httpx.TransportError, method: str, path: str, scrub: Any
) -> WrennConnectionError:
    """Map an httpx transport failure to our error, noting whether the request left."""
    where = f"{method} {path}"
    detail = scrub(str(exc)) or type(exc).__name__
    if isinstance(exc, httpx.ConnectTimeout):
        return WrennTimeoutError(f"{where}: timed out connecting to the server", request_sent=False)
    if isinstance(exc, httpx.PoolTimeout):
        return WrennTimeoutError(
            f"{where}: no connection became free in the pool in time", request_sent=False
        )
    if isinstance(exc, httpx.TimeoutException):
        return WrennTimeoutError(
            f"{where}: timed out waiting for the server ({type(exc).__name__})"
        )
    if isinstance(exc, httpx.ConnectError):
        if _is_tls_failure(exc):
            error = WrennConnectionError(
                f"{where}: TLS verification failed: {detail}", request_sent=False
            )
            error.code = "tls_error"
            return error
        return WrennConnectionError(f"{where}: could not connect: {detail}", request_sent=False)
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
        error = WrennConnectionError(
            f"{where}: the request could not be sent: {detail}", request_sent=False
        )
        error.code = "invalid_request_setup"
        return error
    return WrennConnectionError(f"{where}: the connection failed: {detail}")


def _is_tls_failure(exc: BaseException) -> bool:
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if isinstance(current, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(current):
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


async def finish_iterator(chunks: AsyncIterator[bytes]) -> None:
    """Unwind a partly read body iterator after its response has been closed.

    httpx nests async generators (``aiter_bytes`` over ``aiter_raw`` over the pool's
    stream); closing only the outermost leaves the inner ones suspended, and trio warns
    when the garbage collector later finds them. Advancing once more after the response
    is closed makes the innermost read fail, which unwinds and finishes every layer.
    Chunks that were already buffered are drained first (bounded).
    """
    for _ in range(1024):
        try:
            await chunks.__anext__()
        except Exception:  # the end of the body, or the closed stream refusing to read
            return
