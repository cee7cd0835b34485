"""The event bus behind ``GET /v1/events/stream``: ids, the replay ring, slow readers.

Unit tests of ``EventBus`` over a real SQLite store in a temp dir; the HTTP side is in
test_local_streams.py and, through the SDK, in tests/_async/test_events_reconnect.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from wrenn.local._events import _QUEUE_SIZE, REPLAY_SIZE, EventBus
from wrenn.local._store import Store

pytestmark = pytest.mark.local


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    # Closed by the test: Python 3.13 warns about a connection left to the collector,
    # in whichever later test the collector happens to run.
    opened = Store(tmp_path / "db")
    try:
        yield opened
    finally:
        opened.close()


def publish(bus: EventBus, count: int) -> None:
    for _ in range(count):
        bus.publish("capsule.state.changed", "cl-1", "capsule", metadata={"to": "running"})


def test_a_resume_inside_the_ring_replays_exactly_what_came_after(store: Store) -> None:
    bus = EventBus(store)
    publish(bus, 10)
    sub, resumed_from, replay = bus.subscribe("7")
    assert resumed_from == 7 and [event_id for event_id, _ in replay] == [8, 9, 10]
    assert sub.queue.empty()
    publish(bus, 1)
    assert sub.queue.get_nowait()[0] == 11  # live from there: nothing twice, nothing lost
    _, resumed_from, replay = bus.subscribe("10")
    assert resumed_from == 10 and [event_id for event_id, _ in replay] == [11]


def test_an_id_older_than_the_ring_or_unknown_starts_after_the_newest(store: Store) -> None:
    bus = EventBus(store)
    publish(bus, REPLAY_SIZE + 5)
    newest = REPLAY_SIZE + 5
    oldest_kept = newest - REPLAY_SIZE + 1
    assert bus.subscribe(str(oldest_kept - 1))[1] == oldest_kept - 1  # still complete
    for unusable in (str(oldest_kept - 2), "1", "x", "", " ", str(newest + 1), "9" * 40, None):
        _, resumed_from, replay = bus.subscribe(unusable)
        assert (resumed_from, replay) == (newest, []), unusable


def test_ids_keep_increasing_across_a_restart_on_the_same_state(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    publish(EventBus(store), 3)
    store.close()
    store = Store(tmp_path / "db")
    try:
        bus = EventBus(store)  # an empty ring, after a restart
        assert bus.subscribe("3")[1:] == (3, [])  # nothing was published since: complete
        assert bus.subscribe("2")[1] == 3  # event 3 is gone from memory: a gap
        publish(bus, 1)
        assert bus.subscribe(None)[1] == 4
    finally:
        store.close()


def test_a_subscriber_that_stops_reading_ends_after_what_it_has_queued(store: Store) -> None:
    bus = EventBus(store)
    sub, _, _ = bus.subscribe(None)
    publish(bus, _QUEUE_SIZE + 3)
    assert sub.ending and not sub.finished()
    ids = [sub.queue.get_nowait()[0] for _ in range(_QUEUE_SIZE)]  # type: ignore[index]
    assert ids == list(range(1, _QUEUE_SIZE + 1))  # none dropped from the middle
    assert sub.finished()  # the stream ends; its client resumes from the ring
    assert [event_id for event_id, _ in bus.subscribe(str(ids[-1]))[2]] == [
        _QUEUE_SIZE + 1,
        _QUEUE_SIZE + 2,
        _QUEUE_SIZE + 3,
    ]
