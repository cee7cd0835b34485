"""Building the ``httpx.Request`` of one attempt: URL, headers, body and timeout.

Pure (no I/O), shared by the async and the sync requester and tested once
(tests/test_request_building.py). Kept cheap: it runs once per attempt of every call
(tests/test_hot_path.py counts its allocations).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from ._config import RETRY_COUNT_HEADER, USER_AGENT, ClientOptions
from ._constants import URL_CACHE_SIZE

# Parsed request URLs, by URL string. Parsing and validating a URL is the largest
# single cost httpx adds per request (tens of microseconds), and calls repeat the same
# few URLs (a status poll asks for one capsule again and again). ``httpx.URL`` is
# immutable, so one parsed object can back any number of requests. Bounded: emptied
# when full rather than tracking recency, which costs nothing per hit.
_URL_CACHE: dict[str, httpx.URL] = {}


def parsed_url(url: str) -> httpx.URL:
    parsed = _URL_CACHE.get(url)
    if parsed is None:
        parsed = httpx.URL(url)  # an invalid URL raises here, as inside build_request
        if len(_URL_CACHE) >= URL_CACHE_SIZE:
            _URL_CACHE.clear()
        _URL_CACHE[url] = parsed
    return parsed


def build_request(
    client: httpx.AsyncClient | httpx.Client,
    options: ClientOptions,
    method: str,
    url: str,
    attempt: int,
    timeout: httpx.Timeout,
    *,
    params: Mapping[str, str] | None,
    content: Any,
    files: Any,
    data: Any,
    headers: Mapping[str, str] | None,
) -> httpx.Request:
    """The request of attempt number ``attempt`` (0-based) to the absolute ``url``.

    Our ``User-Agent`` and retry-count header come first, then the client's default
    headers, then the call's own.
    """
    merged = None
    if headers or options.default_headers:
        merged = {"User-Agent": USER_AGENT, **options.default_headers, **(headers or {})}
        merged[RETRY_COUNT_HEADER] = str(attempt)
    request = client.build_request(
        method,
        parsed_url(url),
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
    return request


def build_bare_request(
    method: str,
    url: str,
    attempt: int,
    timeout: httpx.Timeout,
    *,
    params: Mapping[str, str] | None,
    content: Any,
    files: Any = None,
    data: Any = None,
    headers: Mapping[str, str] | None,
) -> httpx.Request:
    """A request that carries nothing of the client's: for another origin, such as a
    capsule's port proxy, where what runs inside the capsule reads every header.

    Built without the httpx client, so neither its default headers nor its cookies go
    along, and without the client's ``default_headers`` (the caller's, meant for the
    API): only our ``User-Agent``, the retry count and the call's own ``headers``.
    """
    merged = {"User-Agent": USER_AGENT, **(headers or {}), RETRY_COUNT_HEADER: str(attempt)}
    return httpx.Request(
        method,
        parsed_url(url),
        params=params,
        content=content,
        files=files,
        data=data,
        headers=merged,
        extensions={"timeout": timeout.as_dict()},
    )
