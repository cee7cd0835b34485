"""In-memory fan-out of platform events to SSE subscribers (and to SQLite).

The API 0.2.2 SSE model: action events carry ``outcome`` (and ``error`` when it
is ``error``); ``capsule.state.changed`` and the ``connected`` sentinel do not.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
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


class EventBus:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(_QUEUE_SIZE)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._subscribers.discard(q)

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
        self._store.add_event(now, event, payload)
        for q in list(self._subscribers):
            # A subscriber that stopped reading loses events rather than memory.
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(payload)
        return payload

    def close(self) -> None:
        """Wake every SSE stream so it ends (server shutdown)."""
        for q in list(self._subscribers):
            try:
                q.put_nowait(None)
            except asyncio.QueueFull:
                # Make room for the end marker.
                q.get_nowait()
                q.put_nowait(None)
