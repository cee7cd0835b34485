"""Capsules that share one client (``client=``): one connection pool, one event-stream
subscription for their lifecycle waits, and a client that stays its owner's. Against
wrenn.local over a real loopback socket, in asyncio, trio and (generated) blocking code."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from tests.reliability.fixtures import agather
from wrenn import AsyncCapsule, AsyncWrennClient, WrennNotFoundError, code_runner
from wrenn.local import LocalServer
from wrenn.models import Status

pytestmark = pytest.mark.anyio

EVENTS = "/v1/events/stream"


class Wire:
    """What one httpx client sends: the request paths, the TCP connections it opens and
    how many event streams are open at once (httpcore's ``trace`` extension reports the
    connects and the closes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the blocking client's waits carry the stream on a thread
        self.paths: list[str] = []
        self.connections = 0
        self.streams_open = 0
        self.streams_peak = 0

    def http(self, max_connections: int) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            limits=httpx.Limits(max_connections=max_connections),
            event_hooks={"request": [self._on_request]},
        )

    async def _on_request(self, request: httpx.Request) -> None:
        is_stream = request.url.path == EVENTS
        with self._lock:
            self.paths.append(request.url.path)
            if is_stream:
                self.streams_open += 1
                self.streams_peak = max(self.streams_peak, self.streams_open)

        async def trace(name: str, info: dict[str, Any]) -> None:
            with self._lock:
                if name == "connection.connect_tcp.complete":
                    self.connections += 1
                elif is_stream and name == "http11.response_closed.started":
                    self.streams_open -= 1

        request.extensions["trace"] = trace


def client_of(server: LocalServer, http: httpx.AsyncClient | None = None) -> AsyncWrennClient:
    return AsyncWrennClient(api_key=server.api_key, base_url=server.base_url, http_client=http)


async def test_capsules_of_one_client_share_its_pool(local_server: LocalServer) -> None:
    wire = Wire()
    count = 6
    async with wire.http(max_connections=3) as http, client_of(local_server, http) as client:
        created = await agather(
            [lambda: AsyncCapsule.create(template="minimal", client=client) for _ in range(count)]
        )
        capsules = [c for c in created if isinstance(c, AsyncCapsule)]
        assert len(capsules) == count, created
        assert all(c.client is client for c in capsules)
        assert wire.paths.count("/v1/capsules") == count  # every create went through it

        async def work(capsule: AsyncCapsule, index: int) -> str:
            await capsule.files.write(f"/root/{index}.txt", str(index))
            return await capsule.files.read(f"/root/{index}.txt")

        before = wire.connections
        done = await agather([lambda c=c, i=i: work(c, i) for i, c in enumerate(capsules)])  # type: ignore[misc]
        assert done == [str(i) for i in range(count)]
        # Six capsules working at once opened no more connections than the one pool's
        # limit (a capsule of its own would open at least one each).
        assert wire.connections - before <= 3, (before, wire.connections)
        await agather([lambda c=c: c.destroy() for c in capsules])  # type: ignore[misc]
        for capsule in capsules:
            await capsule.aclose()
        assert not client.is_closed


async def test_lifecycle_waits_of_capsules_sharing_a_client_use_one_subscription(
    slow_local_server: LocalServer,
) -> None:
    wire = Wire()
    count = 4
    async with wire.http(10) as http, client_of(slow_local_server, http) as client:
        created = await agather([lambda: AsyncCapsule.create(client=client) for _ in range(count)])
        capsules = [c for c in created if isinstance(c, AsyncCapsule)]
        assert len(capsules) == count, created
        assert all(c.info is not None and c.info.status is Status.running for c in capsules)
        paused = await agather([lambda c=c: c.pause() for c in capsules])  # type: ignore[misc]
        assert all(getattr(p, "status", None) is Status.paused for p in paused), paused
        await agather([lambda c=c: c.destroy() for c in capsules])  # type: ignore[misc]
        for capsule in capsules:
            await capsule.aclose()
        # Twelve transitions, each waited for (half a second per transitional status),
        # and never more than one event stream open: the client's one subscription.
        assert wire.paths.count(EVENTS) >= 1
        assert wire.streams_peak == 1, wire.streams_peak
        assert not client.is_closed
        for capsule in capsules:
            assert (await client.capsules.get(capsule.capsule_id)).status is Status.stopped


async def test_waits_through_with_options_copies_share_the_original_subscription(
    slow_local_server: LocalServer,
) -> None:
    wire = Wire()
    async with wire.http(10) as http, client_of(slow_local_server, http) as client:
        created = await agather([lambda: client.capsules.create() for _ in range(3)])
        ids = [c.id for c in created if not isinstance(c, BaseException)]
        assert len(ids) == 3, created
        # Three views of one client pause at once: the original and two copies.
        views = [client, client.with_options(max_retries=1), client.with_options(timeout=30.0)]
        paused = await agather(
            [lambda v=v, i=i: v.capsules.pause(i) for v, i in zip(views, ids, strict=True)]  # type: ignore[misc]
        )
        assert all(getattr(p, "status", None) is Status.paused for p in paused), paused
        # A copy waits through its original's waiter: one event stream for all three.
        assert wire.paths.count(EVENTS) >= 1
        assert wire.streams_peak == 1, wire.streams_peak
        await agather([lambda i=i: client.capsules.destroy(i) for i in ids])  # type: ignore[misc]


async def test_closing_a_capsule_leaves_a_given_client_open(local_server: LocalServer) -> None:
    async with client_of(local_server) as client:
        capsule = await AsyncCapsule.create(client=client)
        await capsule.aclose()  # lets go of the capsule; the client is the caller's
        assert not client.is_closed
        again = await AsyncCapsule.connect(capsule.capsule_id, client=client)
        assert again.client is client
        assert (await again.commands.run("echo shared")).stdout == "shared\n"
        async with again:
            pass
        assert not client.is_closed
        assert (await client.capsules.get(capsule.capsule_id)).status is Status.stopped
        # A create or connect that fails leaves the given client open too.
        with pytest.raises(WrennNotFoundError):
            await AsyncCapsule.create(template="no-such-template", client=client)
        with pytest.raises(WrennNotFoundError):
            await AsyncCapsule.connect("cl-" + "0" * 25, client=client)
        assert not client.is_closed
        assert isinstance(await client.capsules.list(), list)


async def test_a_capsule_that_built_its_client_closes_it(local_server: LocalServer) -> None:
    keys = {"api_key": local_server.api_key, "base_url": local_server.base_url}
    async with await AsyncCapsule.create(**keys) as capsule:
        own = capsule.client
        assert not own.is_closed
    assert own.is_closed
    capsule = await AsyncCapsule.create(**keys)
    attached = await AsyncCapsule.connect(capsule.capsule_id, **keys)
    await attached.aclose()
    assert attached.client.is_closed and not capsule.client.is_closed
    async with capsule:
        pass
    assert capsule.client.is_closed


async def test_client_is_refused_with_a_key_or_url_or_of_the_wrong_kind(
    local_server: LocalServer,
) -> None:
    async with client_of(local_server) as client:
        before = len(await client.capsules.list())
        with pytest.raises(ValueError, match="client= or api_key=/base_url="):
            await AsyncCapsule.create(client=client, api_key=local_server.api_key)
        with pytest.raises(ValueError, match="client= or api_key=/base_url="):
            await AsyncCapsule.connect("cl-x", client=client, base_url=local_server.base_url)
        with pytest.raises(TypeError, match=r"a wrenn client \(AsyncWrennClient\)"):
            await AsyncCapsule.create(client=object())  # type: ignore[arg-type]
        # Refused before anything was sent: no capsule was made, the client is open.
        assert not client.is_closed
        assert len(await client.capsules.list()) == before


async def test_a_code_runner_on_a_given_client_closes_only_its_kernel_connection(
    local_server: LocalServer,
) -> None:
    async with client_of(local_server) as client:
        async with await code_runner.AsyncCapsule.create(client=client) as capsule:
            assert capsule.client is client
            assert (await capsule.run_code("x = 6 * 7\nx")).text == "42"
            kernel = capsule.kernel_id
            await capsule.aclose()
            assert capsule._socket is None
            assert not client.is_closed
            # Only the kernel connection was closed: the object still works, on the same
            # kernel (the variable is still there).
            assert (await capsule.run_code("x + 1")).text == "43"
            assert capsule.kernel_id == kernel
        assert capsule._socket is None and not client.is_closed
        assert (await client.capsules.get(capsule.capsule_id)).status is Status.stopped
