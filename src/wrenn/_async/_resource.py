"""Base of the resource objects hanging off a client (``client.capsules``, ...).

``AsyncAPIResource`` is the only way a resource sends: ``_get``/``_post``/``_put``/
``_delete`` for a call whose body is read in full, ``_stream`` for a response read as it
arrives, ``_ws`` for a WebSocket. Each takes keyword-only ``timeout`` (the meaning of the
client's own ``timeout``, for this call only) and ``extra_headers``, as openai-python's
resources do. ``_port_request``/``_port_ws`` reach a capsule's port through the same
pool: another origin, no credentials, the caller's deadline. No resource module reads
the client's options or requester itself (tests/test_resource_boundary.py greps for it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx

from .._config import NOT_GIVEN, ClientOptions, updated_options
from .._responses import RawResponse

if TYPE_CHECKING:
    from ._websocket import AsyncWebSocket
    from .client import AsyncWrennClient


class AsyncAPIResource:
    """Sends a resource's calls through its client's requester, with the client's options.

    The options are read at call time, so a resource of a ``with_options()`` copy sends
    with the copy's settings through the shared connection pool.
    """

    def __init__(self, client: AsyncWrennClient) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._client!r}>"

    @property
    def _closed(self) -> bool:
        """Whether the client's connection pool has been closed."""
        return self._client._requester.closed

    def _call_options(
        self, timeout: float | httpx.Timeout | None, max_response_bytes: int | None
    ) -> ClientOptions:
        options = self._client._options
        if timeout is NOT_GIVEN and max_response_bytes is None:
            return options  # the common case costs nothing
        changes: dict[str, Any] = {}
        if timeout is not NOT_GIVEN:
            changes["timeout"] = timeout
        if max_response_bytes is not None:
            changes["max_response_bytes"] = max_response_bytes
        return updated_options(options, **changes)

    async def _request(
        self,
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
        max_response_bytes: int | None = None,
        timeout: float | httpx.Timeout | None = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> RawResponse:
        """One call whose body is read in full (``max_response_bytes`` raises the cap)."""
        return await self._client._requester.request(
            self._call_options(timeout, max_response_bytes),
            method,
            path,
            ok=ok,
            params=params,
            content=content,
            files=files,
            data=data,
            headers=_merged(headers, extra_headers),
            read_timeout=read_timeout,
            missing_ok_on_retry=missing_ok_on_retry,
            replayable=replayable,
        )

    async def _get(self, path: str, **kwargs: Any) -> RawResponse:
        return await self._request("GET", path, **kwargs)

    async def _post(self, path: str, **kwargs: Any) -> RawResponse:
        return await self._request("POST", path, **kwargs)

    async def _put(self, path: str, **kwargs: Any) -> RawResponse:
        return await self._request("PUT", path, **kwargs)

    async def _delete(self, path: str, **kwargs: Any) -> RawResponse:
        return await self._request("DELETE", path, **kwargs)

    async def _stream(
        self,
        method: str,
        path: str,
        *,
        ok: tuple[int, ...] = (200,),
        params: Mapping[str, str] | None = None,
        content: Any = None,
        headers: Mapping[str, str] | None = None,
        read_timeout: float | None = None,
        idle_timeout: float | None = None,
        replayable: bool = True,
        timeout: float | httpx.Timeout | None = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Open a streamed response with a status in ``ok``; the caller must close it."""
        return await self._client._requester.open_stream(
            self._call_options(timeout, None),
            method,
            path,
            ok=ok,
            params=params,
            content=content,
            headers=_merged(headers, extra_headers),
            read_timeout=read_timeout,
            idle_timeout=idle_timeout,
            replayable=replayable,
        )

    async def _ws(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        timeout: float | httpx.Timeout | None = NOT_GIVEN,
    ) -> AsyncWebSocket:
        """Upgrade ``GET path`` to a WebSocket, with the same retries and errors as any GET."""
        # Loaded on first use: with it come httpcore and wsproto, which would otherwise
        # add ~25 ms to importing the client classes (bench/, cold import).
        from ._websocket import aconnect_websocket

        return await aconnect_websocket(
            self._client._requester, self._call_options(timeout, None), path, params=params
        )

    # --- a capsule's port: another origin, without credentials ------------------------

    def _port_options(self, base_url: str, max_response_bytes: int | None) -> ClientOptions:
        """The client's options for a call to a capsule's port through its proxy.

        No retries (the caller polls a port that may not listen yet, and its failures
        must not draw on the client's retry budget) and no phase timeouts of the
        client's own: the caller's deadline bounds every wait.
        """
        return self._client._options.replace(
            base_url=httpx.URL(base_url),
            max_retries=0,
            timeout=httpx.Timeout(None),
            attempt_timeout=None,
            max_response_bytes=max_response_bytes or self._client._options.max_response_bytes,
        )

    async def _port_request(
        self,
        method: str,
        base_url: str,
        path: str,
        *,
        deadline: float,
        headers: Mapping[str, str],
        ok: tuple[int, ...] = (200,),
        content: bytes | None = None,
        max_response_bytes: int | None = None,
    ) -> RawResponse:
        """One call to ``base_url`` (a capsule's port proxy), fully read by ``deadline``.

        Sent through the client's pool with no API key and none of the client's headers
        (the proxy can share the API's origin): only ``headers`` go along.
        """
        return await self._client._requester.request(
            self._port_options(base_url, max_response_bytes),
            method,
            path,
            ok=ok,
            content=content,
            headers=headers,
            deadline=deadline,
            credentials=False,
        )

    async def _port_ws(
        self, base_url: str, path: str, *, deadline: float, headers: Mapping[str, str]
    ) -> AsyncWebSocket:
        """A WebSocket to a capsule's port, opened by ``deadline``, as ``_port_request``."""
        from ._websocket import aconnect_websocket  # on first use, as in _ws

        return await aconnect_websocket(
            self._client._requester,
            self._port_options(base_url, None),
            path,
            headers=headers,
            deadline=deadline,
            credentials=False,
        )


def _merged(
    headers: Mapping[str, str] | None, extra_headers: Mapping[str, str] | None
) -> Mapping[str, str] | None:
    if not extra_headers:
        return headers
    return {**(headers or {}), **extra_headers}
