"""What each capsule transition waits for, and how often to look: pure policy, no I/O.

On API 0.2.2 every lifecycle call answers 202 and the capsule settles later, passing
through a transitional status (``starting``, ``pausing``, ``resuming``, ``stopping``,
``snapshotting``). A ``Transition`` says which statuses end the wait, which mean the
capsule is still on its way, and which mean the call did not take effect.
"""

from __future__ import annotations

import enum
import random
import secrets
from dataclasses import dataclass

from ._models_control import Status


class Verdict(enum.Enum):
    DONE = "done"
    WAIT = "wait"
    FAILED = "failed"


# Every status this SDK knows. A status outside this set is one the platform added
# later: the capsule is taken to be still moving, never failed.
KNOWN = frozenset(s.value for s in Status)
# The statuses of a capsule in the middle of a transition.
TRANSITIONAL = frozenset({"pending", "starting", "pausing", "resuming", "stopping", "snapshotting"})


@dataclass(frozen=True)
class Transition:
    """One lifecycle action as a client waits for it.

    Attributes:
        action: the verb, for messages ("create", "pause", ...).
        targets: statuses that end the wait successfully.
        passing: transitional statuses: keep waiting.
        reverted: the status the capsule started from; once a passing status has been
            seen, landing here again means the action failed and was rolled back.
        gone_is_done: a capsule that no longer exists (404) ends the wait successfully.
    """

    action: str
    targets: frozenset[str]
    passing: frozenset[str]
    reverted: frozenset[str] = frozenset()
    gone_is_done: bool = False

    def judge(self, status: str | None, seen_passing: bool) -> Verdict:
        if status in self.targets:
            return Verdict.DONE
        if status is None or status in self.passing or status not in KNOWN:
            return Verdict.WAIT
        if status in self.reverted:
            return Verdict.FAILED if seen_passing else Verdict.WAIT
        return Verdict.FAILED

    def describe_targets(self) -> str:
        return " or ".join(sorted(self.targets))


CREATE = Transition(
    "create",
    targets=frozenset({"running"}),
    passing=frozenset({"pending", "starting"}),
)
PAUSE = Transition(
    "pause",
    targets=frozenset({"paused", "hibernated"}),
    passing=frozenset({"pausing"}),
    reverted=frozenset({"running"}),
)
RESUME = Transition(
    "resume",
    targets=frozenset({"running"}),
    passing=frozenset({"resuming", "starting"}),
    reverted=frozenset({"paused", "hibernated"}),
)
DESTROY = Transition(
    "destroy",
    targets=frozenset({"stopped", "missing"}),
    # Right after the 202 a capsule may still show the status it had: all of them are
    # "on the way out"; only ``error`` ends the wait as a failure.
    passing=KNOWN - {"stopped", "missing", "error"},
    gone_is_done=True,
)
SNAPSHOT = Transition(
    "snapshot",
    # A running capsule returns to running, a paused one stays paused.
    targets=frozenset({"running", "paused", "hibernated"}),
    passing=frozenset({"snapshotting", "pausing", "resuming"}),
)
# Any status a capsule can rest in: what a cleanup waits for before destroying it.
SETTLE = Transition(
    "settle",
    targets=KNOWN - TRANSITIONAL,
    passing=TRANSITIONAL,
    gone_is_done=True,
)


class PollDelays:
    """Growing, jittered delays between two looks at a capsule.

    Short at first, since most transitions are over in well under a second; longer
    later, so a slow one costs the server few requests. With a live event stream the
    poll is only a safety net, between one and five seconds apart. Jitter spreads the polls of many
    waiters so they do not arrive together.
    """

    FIRST = 0.05
    GROWTH = 1.6
    MAX_POLLING = 2.0
    # While events flow they wake the wait the moment the capsule changes; a poll is then
    # only the safety net, so it comes no sooner than this, and at most this far apart.
    MIN_WITH_EVENTS = 1.0
    MAX_WITH_EVENTS = 5.0

    def __init__(self, max_delay: float | None = None, rng: random.Random | None = None) -> None:
        self._next = self.FIRST if max_delay is None else min(self.FIRST, max_delay)
        self._max = max_delay
        self._rng = rng or random.Random()

    def next(self, events_live: bool) -> float:
        cap = self.MAX_WITH_EVENTS if events_live else self.MAX_POLLING
        floor = self.MIN_WITH_EVENTS if events_live else 0.0
        if self._max is not None:
            cap, floor = self._max, min(floor, self._max)
        delay = min(max(self._next, floor), cap)
        self._next = min(self._next * self.GROWTH, cap)
        return delay * self._rng.uniform(0.8, 1.2)


def new_snapshot_name() -> str:
    """A fresh template name chosen by the client, so a wait can find its template.

    The server would pick one if none were sent, but the 0.2.2 answer to a snapshot is
    the capsule, not the template: without a name known in advance, nothing could tell
    which template the snapshot became.
    """
    return f"snapshot-{secrets.token_hex(6)}"
