"""The one path every HTTP call takes: send, retry, read the body. I/O only.

Resources never touch httpx themselves; they describe a call (method, path, body,
accepted statuses, timeouts) and receive either a fully read ``RawResponse`` or, for
streams, an open ``httpx.Response`` whose status is already known to be good.

What is decided here is decided elsewhere, in plain modules tested once: the request
(``wrenn/_request.py``), every timeout and deadline (``wrenn/_deadline.py``), whether
and when to retry (``wrenn/_retry.py``) and which exception a failure becomes
(``wrenn/_error_mapping.py``). The pool, proxies, TLS, the fork and loop guards and the
hand-over of a request to the pool are ``_transport.py``'s; the bodies ``_body.py``'s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from functools import partial
from typing import Any

import httpx

from .. import _deadline
from .._compat import (
    AsyncAttemptTimer,
    AsyncCleanupScope,
    allow_in_event_loop,
    asleep,
)
from .._config import ClientOptions
from .._error_mapping import (
    attempt_expired,
    error_from_response,
    pool_wait_expired,
    transport_error,
)
from .._exceptions import WrennConnectionError, WrennError, WrennRateLimitError, WrennTimeoutError
from .._logs import logger
from .._request import build_bare_request, build_request
from .._responses import RawResponse
from .._retry import parse_retry_after, status_retry_delay, transport_retry_delay
from .._tracing import call_span
from ._body import AsyncBodyStream, keep_slot_until_closed, read_body, unlink_stream
from ._transport import AsyncTransport


class AsyncRequester(AsyncTransport):
    """Sends every request of one client and its copies through its connection pool."""

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
        credentials: bool = True,
    ) -> httpx.Request:
        # The API's calls carry the client's key and headers; a call elsewhere (a
        # capsule's port) carries none of them.
        builder = partial(build_request, client, options) if credentials else build_bare_request
        request = builder(
            method,
            options.url(path),
            attempt,
            timeout,
            params=params,
            content=content,
            files=files,
            data=data,
            headers=headers,
        )
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
        deadline: float | None = None,
        credentials: bool = True,
    ) -> RawResponse:
        """Send one API call, retrying per policy, and return its fully read response.

        ``missing_ok_on_retry`` makes a 404 on a *retry* count as success: a DELETE whose
        first attempt timed out may well have been applied already.

        ``deadline`` (``time.monotonic()``) replaces the call deadline the client's
        ``total_timeout`` would give. ``credentials=False`` sends no API key and none of
        the client's headers (``build_bare_request``), whatever the origin: for a call
        to a capsule's port, which can share the API's origin (wrenn.local).
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
                deadline=deadline,
                credentials=credentials,
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
        deadline: float | None = None,
        credentials: bool = True,
    ) -> httpx.Response:
        """Open a streamed response with a status in ``ok``; the caller must close it.

        Retries happen only until a good status arrives; once bytes of the body flow,
        a failure is the stream's to report. ``idle_timeout`` replaces the read timeout
        exactly (``read_timeout`` only ever lengthens it): it bounds the silence between
        two chunks of the stream. ``deadline`` and ``credentials`` as for ``request``.
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
                deadline=deadline,
                credentials=credentials,
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
        deadline: float | None = None,
        credentials: bool = True,
    ) -> RawResponse | httpx.Response:
        allow_in_event_loop(method, path)
        if deadline is None:
            deadline = _deadline.call_deadline(
                time.monotonic(), options.total_timeout, read_timeout, options.timeout.connect
            )
        base_timeout = _deadline.phase_timeouts(options.timeout, read_timeout)
        attempt_timeout = _deadline.attempt_timeout(options.attempt_timeout, read_timeout)
        max_retries = options.max_retries if replayable else 0
        scrub = options.api_key.scrub
        attempt = 0
        while True:
            client = self.ensure_usable()
            timeout = _deadline.with_idle_read(
                _deadline.clamp(base_timeout, deadline), idle_timeout
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
                credentials=credentials,
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
                    credentials=credentials,
                )
            except WrennConnectionError as error:
                delay = transport_retry_delay(
                    error, method, attempt, max_retries, deadline, self.budget
                )
                if delay is not None:
                    logger.info(
                        "%s; retrying in %.2f s (%d of %d)",
                        error.message,
                        delay,
                        attempt + 1,
                        max_retries,
                    )
                    await asleep(delay)
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
            delay = status_retry_delay(
                method,
                status,
                response_headers,
                retry_after,
                attempt,
                max_retries,
                deadline,
                self.budget,
            )
            if delay is None:
                raise api_error
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
        credentials: bool = True,
    ) -> httpx.Response | tuple[int, httpx.Headers, bytes]:
        """Send one attempt. A stream with a status in ``ok`` comes back open; anything
        else is read fully and closed. Transport failures raise ``WrennConnectionError``.

        ``attempt_timeout`` bounds the attempt's wall clock (``WrennTimeoutError`` past
        it): everything up to the end of the body, or for a stream up to its response
        head (the stream's own idle bounds take over from there).

        Every attempt holds one of the client's pool slots while it runs, so no more
        requests enter httpcore's pool than it has connections (none queue inside it); a
        stream that comes back open keeps its slot until it is closed (``AsyncSlotStream``).
        """
        scrub = options.api_key.scrub
        slots = self._slots
        sent = False
        attempt_deadline = _deadline.attempt_deadline(attempt_timeout)
        timer = AsyncAttemptTimer(attempt_timeout)
        try:
            with timer:
                if slots is not None and not await self.take_slot(
                    slots, timeout.pool, deadline, attempt_deadline
                ):
                    raise pool_wait_expired(method, path)
                try:
                    sent = True  # from here on the server may see the request
                    try:
                        response = await self.send_request(
                            client, request, options.api_key if credentials else None
                        )
                    except BaseException as exc:
                        self.heal(client)
                        if isinstance(request.stream, AsyncBodyStream):
                            with AsyncCleanupScope(1.0):
                                await request.stream.aclose()
                        if isinstance(exc, httpx.TransportError):
                            raise transport_error(exc, method, path, scrub, request) from exc
                        raise
                    if ok is not None and response.status_code in ok:
                        if slots is not None:
                            keep_slot_until_closed(response, slots)
                            slots = None  # the response gives it back when closed
                        return response
                    try:
                        body = await read_body(
                            response,
                            deadline,
                            options.max_response_bytes,
                            method,
                            path,
                            attempt_deadline=attempt_deadline,
                        )
                    except httpx.TransportError as exc:
                        raise transport_error(exc, method, path, scrub, request) from exc
                    finally:
                        await response.aclose()
                        unlink_stream(response)
                    return response.status_code, response.headers, body
                finally:
                    if slots is not None:
                        slots.release()
        except WrennTimeoutError as exc:
            # The blocking client's bound surfaces as a socket timeout: say which one.
            if attempt_timeout is not None and timer.expired:
                raise attempt_expired(method, path, attempt_timeout, exc.request_sent) from exc
            raise
        # Only a cancelling timer (the event-loop client's) gets here: its scope ended
        # the attempt and swallowed the cancellation it used to do so.
        raise attempt_expired(method, path, attempt_timeout, sent)
