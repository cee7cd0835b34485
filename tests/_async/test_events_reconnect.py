"""Events you can rely on: a reconnecting event stream and ``wait_for`` built on it.

The drop, the replay and the refusals come from a scripted feed (tests/fake_platform.py)
that answers each connection from a list, so nothing here depends on timing; the
end-to-end test drops the streams of a real wrenn.local over a loopback socket and
synchronises on the ``connected`` event each new connection starts with.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.fake_platform import DROP, END, SILENT, FakeEventFeed, FakePlatform, sse_frame
from tests.helpers import API_KEY, BASE_URL
from wrenn import (
    AsyncWrennClient,
    WrennAuthenticationError,
    WrennForbiddenError,
    WrennNotFoundError,
    WrennStreamInterruptedError,
)
from wrenn._async.events import AsyncEventStream
from wrenn._reconnect import EventStreamGap
from wrenn.local import CutStream, LocalServer
from wrenn.models import Status

pytestmark = pytest.mark.anyio

# Reconnecting is the default: only the delay is shortened.
FAST = {"reconnect_delay": 0.001}


def client_of(handler: FakeEventFeed | FakePlatform) -> AsyncWrennClient:
    http = httpx.AsyncClient(transport=handler.transport())
    return AsyncWrennClient(api_key=API_KEY, base_url=BASE_URL, http_client=http, max_retries=0)


def ids(*pairs: tuple[str, str | None]) -> list[bytes]:
    return [sse_frame(kind, "cl-1", event_id) for kind, event_id in pairs]


async def test_a_dropped_stream_reconnects_resumes_dedups_and_reports_the_gap() -> None:
    feed = FakeEventFeed(
        [
            (ids(("connected", None), ("capsule.create", "1"), ("capsule.pause", "2")), DROP),
            # The server honours Last-Event-ID but re-sends the last event it had sent.
            (
                ids(
                    ("connected", None),
                    ("capsule.pause", "2"),
                    ("capsule.migrated", "3"),  # a kind this SDK does not know: kept
                    ("capsule.resume", "4"),
                ),
                END,
            ),
            401,  # the key was revoked meanwhile: raised at once, not retried
        ]
    )
    seen_gaps: list[EventStreamGap] = []
    async with client_of(feed) as client:
        kinds = []
        with pytest.raises(WrennAuthenticationError):
            async with client.events.stream(**FAST, on_gap=seen_gaps.append) as stream:  # type: ignore[arg-type]
                for _ in range(20):  # bounded: the script has 7 events
                    kinds.append((await stream.__anext__()).event)
        await client.http.aclose()
    assert kinds == [
        "connected",
        "capsule.create",
        "capsule.pause",
        "connected",
        "capsule.migrated",
        "capsule.resume",
    ]
    assert stream.duplicates == 1  # the re-sent capsule.pause
    assert feed.resumed_from == [None, "2", "4"]
    assert list(stream.gaps) == seen_gaps and len(seen_gaps) == 1
    gap = seen_gaps[0]
    assert gap.type == "gap" and gap.reason == "ReadError"
    assert gap.last_event_id == "2" and gap.resumable and gap.attempts == 1
    assert gap.dropped_at <= gap.resumed_at
    assert stream.reconnects == 1


async def test_a_server_without_ids_gets_every_event_and_every_gap_is_reported() -> None:
    frames = ids(("connected", None), ("capsule.create", None))
    feed = FakeEventFeed([(frames, END), (frames, DROP), (frames, END), 404])
    async with client_of(feed) as client:
        received = []
        with pytest.raises(WrennNotFoundError):
            async with client.events.stream(**FAST) as stream:  # type: ignore[arg-type]
                for _ in range(20):
                    received.append((await stream.__anext__()).event)
        await client.http.aclose()
    # Nothing can be de-duplicated without ids, so nothing is dropped.
    assert received == ["connected", "capsule.create"] * 3
    assert [g.reason for g in stream.gaps] == ["the server ended the stream", "ReadError"]
    assert not any(g.resumable for g in stream.gaps)
    assert feed.resumed_from == [None] * 4


async def test_a_silent_connection_is_reopened_rather_than_raised() -> None:
    feed = FakeEventFeed(
        [
            (ids(("connected", None), ("capsule.create", None)), SILENT),
            (ids(("capsule.pause", None)), END),
            401,
        ]
    )
    async with client_of(feed) as client:
        received = []
        with pytest.raises(WrennAuthenticationError):
            async with client.events.stream(**FAST) as stream:  # type: ignore[arg-type]
                for _ in range(20):
                    received.append((await stream.__anext__()).event)
        await client.http.aclose()
    assert received == ["connected", "capsule.create", "capsule.pause"]
    assert [g.reason for g in stream.gaps] == ["idle timeout"]  # the END then meets the 401


async def test_reconnecting_is_bounded_and_says_why_it_stopped() -> None:
    frames = ids(("connected", None), ("capsule.create", "7"))
    feed = FakeEventFeed([(frames, DROP)])  # every later connection is answered 503
    async with client_of(feed) as client:
        received = []
        with pytest.raises(WrennStreamInterruptedError, match="3 attempts") as caught:
            async with client.events.stream(**FAST, max_reconnects=3) as stream:  # type: ignore[arg-type]
                for _ in range(20):
                    received.append((await stream.__anext__()).event)
        await client.http.aclose()
    assert received == ["connected", "capsule.create"]
    assert len(feed.resumed_from) == 1 + 3
    assert caught.value.last_event_id == "7"
    assert getattr(caught.value.__cause__, "status_code", None) == 503
    assert list(stream.gaps) == []


async def test_a_server_that_drops_every_connection_at_once_is_not_retried_forever() -> None:
    # Each connection opens and says "connected", then breaks: opening succeeds every
    # time, so only counting reconnects that brought no real event bounds the loop.
    feed = FakeEventFeed([(ids(("connected", None)), DROP)] * 50)
    async with client_of(feed) as client:
        with pytest.raises(WrennStreamInterruptedError, match="4 attempts"):
            async with client.events.stream(**FAST, max_reconnects=4) as stream:  # type: ignore[arg-type]
                for _ in range(50):
                    await stream.__anext__()
        await client.http.aclose()
    assert len(feed.resumed_from) == 1 + 4


async def test_a_refusal_on_the_first_connection_is_raised_at_once() -> None:
    feed = FakeEventFeed([403])
    async with client_of(feed) as client:
        with pytest.raises(WrennForbiddenError):
            async with client.events.stream(**FAST) as stream:  # type: ignore[arg-type]
                await stream.__anext__()
        await client.http.aclose()
    assert len(feed.resumed_from) == 1


async def test_reconnect_false_raises_on_a_drop_and_gaps_need_reconnect() -> None:
    feed = FakeEventFeed([(ids(("connected", None), ("capsule.create", "1")), DROP)])
    async with client_of(feed) as client:
        with pytest.raises(WrennStreamInterruptedError):
            async with client.events.stream(reconnect=False) as stream:
                for _ in range(5):
                    await stream.__anext__()
        with pytest.raises(ValueError, match="on_gap"):
            client.events.stream(reconnect=False, on_gap=print)
        with pytest.raises(ValueError, match="max_reconnects"):
            client.events.stream(max_reconnects=0)
        await client.http.aclose()
    assert len(feed.resumed_from) == 1


async def test_the_stream_reconnects_by_default_after_a_drop() -> None:
    feed = FakeEventFeed(
        [
            (ids(("connected", None), ("capsule.create", None)), DROP),
            (ids(("connected", None), ("capsule.pause", None)), END),
            404,
        ]
    )
    async with client_of(feed) as client:
        received = []
        with pytest.raises(WrennNotFoundError):
            async with client.events.stream(reconnect_delay=0.001) as stream:
                for _ in range(10):
                    received.append((await stream.__anext__()).event)
        await client.http.aclose()
    assert received == ["connected", "capsule.create", "connected", "capsule.pause"]
    assert stream.reconnects == 1 and len(stream.gaps) == 1  # then the END met the 404


async def test_a_resume_the_server_confirms_is_no_gap_and_one_it_does_not_is() -> None:
    # wrenn.local's way: the new connection's ``connected`` carries the id it resumes
    # after, then replays what came later; one that cannot says so with another id.
    feed = FakeEventFeed(
        [
            (ids(("connected", "0"), ("capsule.create", "1"), ("capsule.pause", "2")), DROP),
            (ids(("connected", "2"), ("capsule.resume", "3")), DROP),  # confirmed
            (ids(("connected", "9"), ("capsule.destroy", "10")), END),  # "3" is too old
            401,
        ]
    )
    gaps: list[EventStreamGap] = []
    async with client_of(feed) as client:
        received = []
        with pytest.raises(WrennAuthenticationError):
            async with client.events.stream(**FAST, on_gap=gaps.append) as stream:  # type: ignore[arg-type]
                for _ in range(20):
                    received.append((await stream.__anext__()).event)
        await client.http.aclose()
    assert [kind for kind in received if kind != "connected"] == [
        "capsule.create",
        "capsule.pause",
        "capsule.resume",
        "capsule.destroy",
    ]
    assert feed.resumed_from == [None, "2", "3", "10"]
    assert stream.reconnects == 2 and stream.duplicates == 0  # then the END met the 401
    # Only the resume the server did not confirm is a gap.
    assert list(stream.gaps) == gaps and len(gaps) == 1
    assert gaps[0].last_event_id == "3" and gaps[0].resumable


async def test_wait_for_polls_when_the_server_has_no_event_stream() -> None:
    platform = FakePlatform(steps=3)  # its event stream answers 404
    async with client_of(platform) as client:
        created = await client.capsules.create(wait=False)
        assert created.status is Status.starting
        ready = await client.capsules.wait_for(created.id, "running", timeout=30)
        assert ready.status is Status.running
        await client.capsules.pause(created.id, wait=False)
        paused = await client.events.wait_for(created.id, ("paused", "hibernated"), timeout=30)
        assert paused.status is Status.paused
        with pytest.raises(TypeError):
            await client.capsules.wait_for("", "running")
        await client.http.aclose()
    assert platform.count("GET /v1/events/stream") == 1  # tried once, then polled


# --- end to end, over a real socket ---------------------------------------------------


@pytest.fixture(scope="module")
def local_server() -> Iterator[LocalServer]:
    with LocalServer() as server:
        yield server


def drop_event_streams(server: LocalServer) -> None:
    """End every open event stream of the server, from the server's side (its loop)."""
    loop, manager = server._loop, server._manager  # no public hook for this
    assert loop is not None and manager is not None
    loop.call_soon_threadsafe(manager.events.close)


async def test_the_stream_survives_a_server_side_drop_of_a_real_server(
    local_server: LocalServer,
) -> None:
    gaps: list[EventStreamGap] = []
    keys = {"api_key": local_server.api_key, "base_url": local_server.base_url}
    async with AsyncWrennClient(**keys) as client:
        stream = client.events.stream(reconnect_delay=0.01, on_gap=gaps.append)
        async with stream:
            assert (await stream.__anext__()).event == "connected"
            drop_event_streams(local_server)
            # The next event is the new connection's "connected": subscribed again, and
            # resumed where the first one ended (wrenn.local sends ids): no gap.
            assert (await stream.__anext__()).event == "connected"
            assert gaps == [] and stream.reconnects == 1
            capsule = await client.capsules.create(wait=False)
            try:
                for _ in range(50):  # bounded: create sends a handful of events
                    event = await stream.__anext__()
                    if event.resource is not None and event.resource.id == capsule.id:
                        break
                else:
                    raise AssertionError("no event about the new capsule")
                # wait_for rides the client's own shared stream to the same answer.
                ready = await client.capsules.wait_for(capsule.id, "running", timeout=60)
                assert ready.status is Status.running
            finally:
                await client.capsules.destroy(capsule.id)
        assert stream.reconnects == 1


CUTS = 5
CAPSULES = 3
EVENTS_PER_ACTION = 3  # two status changes and the action's own event
WATCHDOG = 60.0


@contextlib.contextmanager
def interrupted_after(seconds: float, *streams: AsyncEventStream) -> Iterator[None]:
    """Bound every read of ``streams`` in time: keepalives keep a stream alive, so an
    event that never comes would otherwise be awaited forever."""
    timer = threading.Timer(seconds, lambda: [stream.interrupt() for stream in streams])
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


async def take(stream: object, count: int) -> list[tuple[str, str, str]]:
    """The next ``count`` events of a stream but ``connected``, as comparable tuples."""
    seen: list[tuple[str, str, str]] = []
    for _ in range(count + 20):  # bounded: a few `connected` may come in between
        event = await stream.__anext__()  # type: ignore[attr-defined]
        if event.event != "connected":
            resource = event.resource.id if event.resource is not None else ""
            seen.append((str(event.event), resource, repr(event.metadata)))
            if len(seen) == count:
                return seen
    raise AssertionError(f"only {len(seen)} of {count} events: {seen}")


async def test_a_stream_the_server_keeps_cutting_delivers_every_event_once_in_order_without_a_gap(
    local_server: LocalServer,
) -> None:
    gaps: list[EventStreamGap] = []
    keys = {"api_key": local_server.api_key, "base_url": local_server.base_url}
    # Lifecycle calls over raw HTTP: an SDK wait would open an event stream of its own,
    # which the cut rule would count.
    headers = {"X-API-Key": local_server.api_key}
    async with (
        AsyncWrennClient(**keys) as client,
        httpx.AsyncClient(base_url=local_server.base_url, headers=headers) as http,
        # The reference is opened before the rule: it is never cut, and sees the truth.
        client.events.stream(reconnect=False) as reference,
    ):
        assert (await reference.__anext__()).event == "connected"
        # Each connection ends after `connected` and two events, as a proxy would.
        cut = local_server.faults.add(CutStream("events", after=3, times=CUTS))
        try:
            stream = client.events.stream(reconnect_delay=0.01, on_gap=gaps.append)
            with interrupted_after(WATCHDOG, stream, reference):
                async with stream:
                    assert (await stream.__anext__()).event == "connected"
                    # Each action's events are read before the next action: the cuts and
                    # the reconnects come while the events are being produced.
                    got: list[tuple[str, str, str]] = []
                    created = []
                    for _ in range(CAPSULES):
                        response = await http.post("/v1/capsules", json={})
                        assert response.status_code == 202, response.text
                        created.append(response.json()["id"])
                        got += await take(stream, EVENTS_PER_ACTION)  # it runs once read
                    for capsule_id in created:
                        response = await http.delete(f"/v1/capsules/{capsule_id}")
                        assert response.status_code in (202, 204), response.text
                        got += await take(stream, EVENTS_PER_ACTION)
                want = await take(reference, 2 * CAPSULES * EVENTS_PER_ACTION)
        finally:
            cut.remove()
    assert got == want  # every event once, in the server's order
    assert {resource for _, resource, _ in want} == set(created)
    assert cut.hits == CUTS and stream.reconnects == CUTS
    assert gaps == [] and list(stream.gaps) == []
    assert stream.duplicates == 0  # the server replays after the id, never before
