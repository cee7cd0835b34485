"""An async client belongs to one event loop, and says so clearly when misused."""

from __future__ import annotations

import asyncio
import gc
import warnings

import httpx
import pytest
import trio

from tests.helpers import API_KEY, BASE_URL, Recorder, json_response
from wrenn import AsyncWrennClient, WrennUsageError


def _client() -> AsyncWrennClient:
    recorder = Recorder({"GET /v1/capsules": json_response(200, [])})
    return AsyncWrennClient(
        api_key=API_KEY,
        base_url=BASE_URL,
        http_client=httpx.AsyncClient(transport=recorder.transport()),
    )


def test_second_asyncio_run_gets_a_clear_error_not_event_loop_is_closed() -> None:
    client = _client()

    async def call() -> object:
        return await client.capsules.list()

    assert asyncio.run(call()) == []
    with pytest.raises(WrennUsageError, match="one client per event loop"):
        asyncio.run(call())


def test_trio_then_asyncio_is_refused_too() -> None:
    client = _client()

    async def call() -> object:
        return await client.capsules.list()

    assert trio.run(call) == []
    with pytest.raises(WrennUsageError):
        asyncio.run(call())


def test_client_per_loop_works_and_garbage_collection_schedules_nothing() -> None:
    async def use_and_drop() -> None:
        client = _client()
        assert await client.capsules.list() == []
        # deliberately not closed: collecting it later must not touch the dead loop

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        asyncio.run(use_and_drop())
        asyncio.run(use_and_drop())
        trio.run(use_and_drop)
        gc.collect()


def test_blocking_client_inside_an_event_loop_warns() -> None:
    from wrenn import WrennClient
    from wrenn._compat import BlockingCallWarning

    recorder = Recorder({"GET /v1/capsules": json_response(200, [])})
    http = httpx.Client(transport=recorder.transport())
    client = WrennClient(api_key=API_KEY, base_url=BASE_URL, http_client=http)

    async def misuse() -> None:
        with pytest.warns(BlockingCallWarning, match="AsyncWrennClient"):
            client.capsules.list()

    asyncio.run(misuse())
    trio.run(misuse)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert client.capsules.list() == []  # outside a loop: silent
    client.close()
    http.close()
