"""Reconnecting an event stream: backoff, the gap record and the de-duplication window.

Pure policy with no I/O, shared by the async and the blocking event stream.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import random
from collections import OrderedDict

from ._constants import DEFAULT_RECONNECT_DELAY, MAX_RECONNECT_DELAY, SEEN_IDS


@dataclasses.dataclass(frozen=True)
class EventStreamGap:
    """A stretch of time in which a reconnecting event stream was not connected.

    Events the server published between ``dropped_at`` and ``resumed_at`` may be
    missing: the platform (API 0.2.2) sends no event ids and does not replay, so a gap
    always means "look again" at whatever you track (``capsules.get``). When the server
    does send ids, the reconnect asks it to resume after ``last_event_id``
    (``Last-Event-ID``), and ``resumable`` is True; events it then re-sends are dropped.
    A server that confirms the resume (the ``connected`` event of the new connection
    carries ``last_event_id``, as ``wrenn.local`` does) replays what was missed, so no
    gap is recorded for that reconnect; a resumable gap is one it did not confirm (the
    id was older than the server keeps, or unknown to it).

    Attributes:
        reason: what ended the connection (``"ReadError"``, ``"idle timeout"``,
            ``"the server ended the stream"``, ...).
        dropped_at: when the drop was noticed (UTC).
        resumed_at: when the new connection was open (UTC).
        attempts: connection attempts it took.
        last_event_id: the id of the last event before the drop, if the server sends ids.
        resumable: whether ``Last-Event-ID`` was sent on the new connection.
    """

    reason: str
    dropped_at: _dt.datetime
    resumed_at: _dt.datetime
    attempts: int
    last_event_id: str | None = None
    resumable: bool = False

    @property
    def type(self) -> str:
        return "gap"


class Backoff:
    """Doubling, jittered delays between reconnect attempts, capped.

    ``retry`` (the server's SSE ``retry:`` field, in milliseconds) replaces the first
    delay when the server sent one. Jitter ("equal jitter": half fixed, half random)
    keeps many clients that lost one server from coming back in step.
    """

    def __init__(
        self,
        first: float = DEFAULT_RECONNECT_DELAY,
        cap: float = MAX_RECONNECT_DELAY,
        rng: random.Random | None = None,
    ) -> None:
        self._first = first
        self._cap = max(cap, first)
        self._rng = rng or random.Random()
        self._attempt = 0

    def reset(self) -> None:
        self._attempt = 0

    def next(self, retry_ms: int | None = None) -> float:
        base = self._first if retry_ms is None else max(retry_ms / 1000.0, 0.0)
        delay = min(base * (2.0**self._attempt), self._cap)
        self._attempt = min(self._attempt + 1, 32)
        jitter: float = self._rng.uniform(0, delay / 2)
        return delay / 2 + jitter


class SeenIds:
    """The ids of the last ``size`` events, oldest forgotten first."""

    def __init__(self, size: int = SEEN_IDS) -> None:
        self._size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, event_id: str) -> bool:
        """Remember ``event_id``; False when it was already known (a duplicate)."""
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return False
        self._ids[event_id] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)
        return True


def utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)
