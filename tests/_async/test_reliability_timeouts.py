"""RELIABILITY.md §3 B: timeouts and deadlines (TO-01 .. TO-07).

Waits are scaled down where the row only needs "longer than the bound", keeping each
row's margin: TO-02's retrying variant uses a 1 s deadline; TO-04's total deadline is
1.2 s instead of 3 s; TO-05's pool timeout is 0.3 s; TO-07's idle timeouts are 0.5 s
(silent server) and 1.6 s against keepalives every 1 s for 2 s instead of 10 s.
"""

from __future__ import annotations

import math

import httpx
import pytest

from tests._async.clients import client_for
from tests.faultserver import FaultServer
from tests.reliability.fixtures import (
    CID,
    SleepRecorder,
    agather,
    in_flight,
    timed,
)
from wrenn import (
    WrennError,
    WrennStreamTimeoutError,
    WrennTimeoutError,
)
from wrenn._async import _websocket
from wrenn._async.commands import AsyncCommands
from wrenn._async.files import AsyncFiles
from wrenn._compat import asleep
from wrenn._constants import DEFAULT_SSE_IDLE_TIMEOUT, DEFAULT_TOTAL_TIMEOUT

pytestmark = pytest.mark.anyio


def _finite(timeout: dict[str, float | None]) -> bool:
    return all(
        timeout.get(phase) is not None and math.isfinite(timeout[phase])  # type: ignore[arg-type]
        for phase in ("connect", "read", "write", "pool")
    )


async def test_TO01_every_operation_has_finite_timeouts() -> None:
    seen: list[tuple[str, str, dict[str, float | None]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, dict(request.extensions["timeout"])))
        return httpx.Response(200, json={})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    client = client_for("http://127.0.0.1:9/api", http_client=http, max_retries=0)
    commands, files = AsyncCommands(client, CID), AsyncFiles(client, CID)

    async def chunks():  # type: ignore[no-untyped-def]
        yield b"x"

    operations = [
        lambda: client.capsules.create(template="minimal"),
        client.capsules.list,
        lambda: client.capsules.get(CID),
        lambda: client.capsules.destroy(CID),
        lambda: client.capsules.pause(CID),
        lambda: client.capsules.resume(CID),
        lambda: client.capsules.ping(CID),
        client.capsules.stats,
        client.capsules.usage,
        lambda: client.capsules.metrics(CID),
        lambda: client.snapshots.create(CID, name="s"),
        client.snapshots.list,
        lambda: client.snapshots.delete("s"),
        lambda: commands.run("true", background=True),
        commands.list,
        lambda: commands.kill(1),
        lambda: files.read("/a"),
        lambda: files.write("/a", b"x"),
        lambda: files.list("/"),
        lambda: files.make_dir("/d"),
        lambda: files.remove("/a"),
        lambda: files.upload_stream("/a", chunks()),
    ]
    for operation in operations:
        try:
            await operation()
        except WrennError:
            pass  # only the timeouts of the requests matter here
    async with client.events.stream(reconnect=False) as events:
        async for _ in events:
            pass
    async with files.download_stream("/a") as download:
        async for _ in download:
            pass
    try:
        async with commands.stream("true") as stream:
            async for _ in stream:
                pass
    except WrennError:
        pass  # the mock cannot upgrade; the upgrade request's timeout was recorded
    await client.aclose()
    await http.aclose()
    assert len(seen) >= len(operations) + 3
    for method, path, timeout in seen:
        assert _finite(timeout), (method, path, timeout)
    sse = [t for m, p, t in seen if p.endswith("/events/stream")]
    assert sse and sse[0]["read"] == DEFAULT_SSE_IDLE_TIMEOUT
    assert math.isfinite(_websocket.WS_PING_INTERVAL + _websocket.WS_PING_TIMEOUT)
    assert math.isfinite(DEFAULT_TOTAL_TIMEOUT)
    assert client.options.total_timeout == DEFAULT_TOTAL_TIMEOUT


async def test_TO02_hang_raises_a_timeout_after_the_read_timeout(srv: FaultServer) -> None:
    url = srv.url_for("hang")
    elapsed = timed()
    async with client_for(url, timeout=httpx.Timeout(5.0, read=1.0), max_retries=0) as client:
        with pytest.raises(WrennTimeoutError):
            await client.capsules.get(CID)
    assert 1.0 <= elapsed() <= 1.5
    # With retries the whole call still ends by the deadline.
    url = srv.url_for("hang")
    elapsed = timed()
    async with client_for(
        url, timeout=httpx.Timeout(5.0, read=0.3), max_retries=5, total_timeout=1.0
    ) as client:
        with pytest.raises(WrennTimeoutError):
            await client.capsules.get(CID)
    assert elapsed() <= 1.0 + 0.5
    assert srv.count(url) >= 2


async def test_TO03_connect_timeout_is_typed_and_retried_even_for_post(
    srv: FaultServer, sleeps: SleepRecorder
) -> None:
    url = srv.backlog_full_url()
    elapsed = timed()
    async with client_for(url, timeout=httpx.Timeout(5.0, connect=1.0), max_retries=0) as client:
        with pytest.raises(WrennTimeoutError) as info:
            await client.capsules.get(CID)
    assert elapsed() <= 1.5
    assert info.value.request_sent is False
    elapsed = timed()
    async with client_for(
        url, timeout=httpx.Timeout(5.0, connect=0.3), max_retries=1, total_timeout=5.0
    ) as client:
        with pytest.raises(WrennTimeoutError) as info:
            await client.capsules.create(template="minimal")
    assert info.value.retries_taken == 1 and len(sleeps.delays) == 1
    assert elapsed() <= 2 * 1.5


async def test_TO04_a_dripping_server_is_cut_by_the_total_deadline(srv: FaultServer) -> None:
    url = srv.url_for("drip")
    elapsed = timed()
    async with client_for(url, total_timeout=1.2) as client:
        with pytest.raises(WrennTimeoutError):
            await client.capsules.get(CID)
        assert elapsed() <= 1.2 + 0.6
        assert in_flight(client.http) == 0


async def test_TO05_pool_timeout_when_the_only_connection_is_busy(srv: FaultServer) -> None:
    url = srv.url_for("hangfirst-1")
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    timeout = httpx.Timeout(5.0, read=1.0, pool=0.3)
    async with client_for(url, limits=limits, timeout=timeout, max_retries=0) as client:
        durations: dict[str, float] = {}

        async def call_a() -> object:
            elapsed = timed()
            try:
                return await client.capsules.get(CID)
            finally:
                durations["a"] = elapsed()

        async def call_b() -> object:
            await asleep(0.2)
            elapsed = timed()
            try:
                return await client.capsules.get(CID)
            finally:
                durations["b"] = elapsed()

        a, b = await agather([call_a, call_b])
        assert isinstance(b, WrennTimeoutError) and b.request_sent is False
        assert "pool" in b.message
        assert durations["b"] <= 0.3 + 0.5
        assert isinstance(a, WrennTimeoutError) and a.request_sent is True  # its own read timeout
        assert 0.9 <= durations["a"] <= 1.7
        capsule = await client.capsules.get(CID)  # the pool is usable again
        assert capsule.id == CID


async def test_TO06_per_call_timeouts_are_applied(srv: FaultServer) -> None:
    seen: list[dict[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.extensions["timeout"]))
        return httpx.Response(200, json={"id": CID, "status": "running"})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    async with client_for("http://127.0.0.1:9/api", http_client=http) as client:
        await client.capsules.get(CID)
        await client.with_options(timeout=3.0).capsules.get(CID)
        await client.with_options(timeout=httpx.Timeout(7.0, connect=2.0)).capsules.get(CID)
    await http.aclose()
    assert seen[0]["read"] == 60.0
    assert seen[1] == {"connect": 3.0, "read": 3.0, "write": 3.0, "pool": 3.0}
    assert seen[2]["connect"] == 2.0 and seen[2]["read"] == 7.0
    # exec: the command's own timeout bounds a foreground exec, not the HTTP read
    # timeout: a stream whose frames keep coming for longer than the read timeout is
    # not cut.
    url = srv.url_for("wsstream")
    async with client_for(url, timeout=httpx.Timeout(5.0, read=0.2)) as client:
        elapsed = timed()
        count = 0
        async with AsyncCommands(client, CID).stream("yes") as stream:
            async for _event in stream:
                count += 1
                if elapsed() > 0.6:
                    break
    assert count >= 4


async def test_TO07_sse_idle_timeout_and_keepalives(srv: FaultServer) -> None:
    url = srv.url_for("sse-silent")
    elapsed = timed()
    async with client_for(url) as client:
        with pytest.raises(WrennStreamTimeoutError):
            async with client.events.stream(idle_timeout=0.5, reconnect=False) as events:
                async for _ in events:
                    pass
    assert elapsed() <= 0.5 + 1.0
    # Keepalives every 1 s for 2 s keep a stream with a 1.6 s idle timeout alive.
    url = srv.url_for("sse-keepalive-2")
    elapsed = timed()
    async with (
        client_for(url) as client,
        client.events.stream(idle_timeout=1.6, reconnect=False) as events,
    ):
        received = [event async for event in events]
    assert received == []
    assert elapsed() >= 1.8  # outlived the idle timeout thanks to the keepalives


# A float ``timeout`` bounds the wall clock of each attempt, not only each socket wait:
# the servers below never stay silent long enough to trip a 2 s read timeout. Upper
# bounds carry generous slack (the attempt ends at 2 s); without the bound these calls
# would run until the 120 s total deadline.


async def test_a_float_timeout_ends_an_attempt_whose_body_drips(srv: FaultServer) -> None:
    url = srv.url_for("drip")
    elapsed = timed()
    async with client_for(url, timeout=2.0, max_retries=0) as client:
        with pytest.raises(WrennTimeoutError, match="within its timeout") as info:
            await client.capsules.get(CID)
        assert elapsed() < 6.0
        assert info.value.retries_taken == 0
        assert in_flight(client.http) == 0
        assert srv.wait_until(lambda: srv.open_connections(url) == 0, 5.0)


async def test_a_per_call_float_timeout_ends_an_attempt_whose_head_drips(
    srv: FaultServer,
) -> None:
    url = srv.url_for("driphead")
    async with client_for(url, max_retries=0) as client:
        elapsed = timed()
        with pytest.raises(WrennTimeoutError, match="within its timeout"):
            await client.with_options(timeout=2.0).capsules.get(CID)
        assert elapsed() < 6.0
        assert in_flight(client.http) == 0


async def test_an_attempt_cut_by_its_timeout_is_retried_like_any_timeout(
    srv: FaultServer, sleeps: SleepRecorder
) -> None:
    url = srv.url_for("drip")
    elapsed = timed()
    async with client_for(url, timeout=1.0, max_retries=1) as client:
        with pytest.raises(WrennTimeoutError) as info:
            await client.capsules.get(CID)  # a GET: safe to ask again
    assert info.value.retries_taken == 1 and len(sleeps.delays) == 1
    assert srv.count(url) == 2
    assert elapsed() < 6.0


async def test_a_slow_answer_within_the_float_timeout_succeeds(srv: FaultServer) -> None:
    # 1 s to arrive, never silent for long: well within a 2 s attempt.
    url = srv.url_for("dripfor-1")
    async with client_for(url, timeout=2.0, max_retries=0) as client:
        capsule = await client.capsules.get(CID)
        assert capsule.id == CID
        # A call with a longer read budget (a VM boot) keeps it on top of the float.
        slow_create = srv.url_for("dripfor-3")
        async with client_for(slow_create, timeout=2.0, max_retries=0) as creating:
            created = await creating.capsules.create(template="minimal", wait=False)
        assert created.id


async def test_an_httpx_timeout_keeps_bounding_each_socket_wait_only(srv: FaultServer) -> None:
    # The documented escape hatch: phases of an httpx.Timeout are per socket operation,
    # so only the call's total deadline ends the dripping body.
    url = srv.url_for("drip")
    elapsed = timed()
    async with client_for(url, timeout=httpx.Timeout(2.0), total_timeout=3.0) as client:
        with pytest.raises(WrennTimeoutError, match="call deadline"):
            await client.capsules.get(CID)
    assert 2.5 < elapsed() < 6.0


async def test_a_float_timeout_does_not_cap_an_open_stream(srv: FaultServer) -> None:
    # Keepalives for 2 s: the stream outlives a 1 s timeout, which bounds only reaching
    # the response head; the idle timeout bounds the silence after it.
    url = srv.url_for("sse-keepalive-2")
    elapsed = timed()
    async with (
        client_for(url, timeout=1.0) as client,
        client.events.stream(idle_timeout=1.6, reconnect=False) as events,
    ):
        received = [event async for event in events]
    assert received == []
    assert elapsed() >= 1.8
