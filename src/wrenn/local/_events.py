"""In-memory fan-out of platform events to SSE subscribers (and to SQLite).

The API 0.2.2 SSE model: action events carry ``outcome`` (and ``error`` when it
is ``error``); ``capsule.state.changed`` and the ``connected`` sentinel do not.

Unlike the platform, each event has an id (its ``seq`` in SQLite: increasing, never
reused) and the latest ``REPLAY_SIZE`` are kept in memory, so a stream reopened with
``Last-Event-ID`` first gets what it missed. The ``connected`` event that starts every
stream carries the id the stream continues from: the client's own ``Last-Event-ID``
when everything after it follows (nothing was lost), the newest id otherwise (the id
is unknown or older than the ring holds: the client has a gap to make up for).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any

from ._store import Store
from ._wire import omit_none, rfc3339

API_KEY_ACTOR = {"type": "api_key", "id": "key-local", "name": "local"}
SYSTEM_ACTOR = {"type": "system", "id": "system", "name": "wrenn-local"}
_QUEUE_SIZE = 1000
ACTION_EVENTS = frozenset(
    {
        "capsule.create",
        "capsule.pause",
        "capsule.resume",
        "capsule.destroy",
        "template.snapshot.create",
        "template.snapshot.delete",
    }
)


# Events kept for replay after a reconnect: minutes of a busy server's events.
REPLAY_SIZE = 4096
# The longest Last-Event-ID taken as an id (a seq has at most 19 digits).
_MAX_ID_DIGITS = 19

Event = tuple[int, dict[str, Any]]  # (id, payload)


class Subscription:
    """One SSE stream's queue of events (``None`` ends it)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(_QUEUE_SIZE)
        self.ending = False

    def end(self) -> None:
        """End the stream after what is queued. Nothing queued is dropped to make room:
        a stream missing one event in the middle would resume past it without a gap."""
        self.ending = True
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)

    def finished(self) -> bool:
        return self.ending and self.queue.empty()


class EventBus:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._subscribers: set[Subscription] = set()
        self._ring: deque[Event] = deque(maxlen=REPLAY_SIZE)
        self._last_id = store.last_event_seq()

    def subscribe(self, last_event_id: str | None = None) -> tuple[Subscription, int, list[Event]]:
        """A new subscription, the id it continues from and the events to replay first.

        Subscribing and taking the replay happen in one step of the loop, so every event
        is either replayed or queued, never both and never neither.
        """
        sub = Subscription()
        self._subscribers.add(sub)
        after = _event_id(last_event_id)
        oldest = self._ring[0][0] if self._ring else self._last_id + 1
        if after is not None and oldest - 1 <= after <= self._last_id:
            return sub, after, [event for event in self._ring if event[0] > after]
        return sub, self._last_id, []

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    def publish(
        self,
        event: str,
        resource_id: str,
        resource_type: str,
        *,
        outcome: str | None = None,
        actor: dict[str, str] | None = None,
        metadata: dict[str, str] | None = None,
        error: str | None = None,
        sandbox: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        # A wrong shape here is a bug in the caller: clients rely on this model.
        if (outcome is not None) != (event in ACTION_EVENTS):
            raise ValueError(f"{event}: outcome {outcome!r} breaks the event model")
        if (error is not None) != (outcome == "error"):
            raise ValueError(f"{event}: error text must come with outcome=error, and only then")
        now = time.time()
        payload = omit_none(
            {
                "event": event,
                "outcome": outcome,
                "resource": {"id": resource_id, "type": resource_type},
                "actor": actor or API_KEY_ACTOR,
                "metadata": metadata or None,
                "error": error,
                "sandbox": sandbox,
                "timestamp": rfc3339(now),
            }
        )
        event_id = self._store.add_event(now, event, payload)
        self._last_id = event_id
        self._ring.append((event_id, payload))
        for sub in list(self._subscribers):
            if sub.ending:
                continue
            try:
                sub.queue.put_nowait((event_id, payload))
            except asyncio.QueueFull:
                # A subscriber that stopped reading costs no memory: its stream ends
                # after what it has queued, and its client resumes from the ring.
                sub.end()
        return payload

    def close(self) -> None:
        """End every SSE stream after what it has queued (server shutdown, tests)."""
        for sub in list(self._subscribers):
            sub.end()


def _event_id(value: str | None) -> int | None:
    """A ``Last-Event-ID`` as one of our ids, or None (absent or not ours)."""
    if value is None:
        return None
    value = value.strip()
    if not value.isascii() or not value.isdigit() or len(value) > _MAX_ID_DIGITS:
        return None
    return int(value)
