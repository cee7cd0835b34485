"""The pure lifecycle policy: verdicts per transition and the poll schedule."""

from __future__ import annotations

import itertools
import random

import pytest

from wrenn._lifecycle import (
    CREATE,
    DESTROY,
    PAUSE,
    RESUME,
    SNAPSHOT,
    PollDelays,
    Verdict,
    new_snapshot_name,
)


@pytest.mark.parametrize(
    ("transition", "status", "seen", "verdict"),
    [
        (CREATE, "starting", False, Verdict.WAIT),
        (CREATE, "pending", False, Verdict.WAIT),
        (CREATE, "running", False, Verdict.DONE),
        (CREATE, "error", True, Verdict.FAILED),
        (CREATE, "stopped", True, Verdict.FAILED),
        (CREATE, "teleporting", True, Verdict.WAIT),  # a status from a newer platform
        (PAUSE, "pausing", False, Verdict.WAIT),
        (PAUSE, "paused", True, Verdict.DONE),
        (PAUSE, "hibernated", True, Verdict.DONE),
        (PAUSE, "running", False, Verdict.WAIT),  # not started yet
        (PAUSE, "running", True, Verdict.FAILED),  # rolled back
        (PAUSE, "missing", True, Verdict.FAILED),
        (RESUME, "resuming", False, Verdict.WAIT),
        (RESUME, "paused", True, Verdict.FAILED),
        (RESUME, "running", True, Verdict.DONE),
        (DESTROY, "running", False, Verdict.WAIT),
        (DESTROY, "stopping", True, Verdict.WAIT),
        (DESTROY, "stopped", True, Verdict.DONE),
        (DESTROY, "missing", True, Verdict.DONE),
        (DESTROY, "error", True, Verdict.FAILED),
        (SNAPSHOT, "snapshotting", False, Verdict.WAIT),
        (SNAPSHOT, "running", True, Verdict.DONE),
        (SNAPSHOT, "paused", True, Verdict.DONE),
        (SNAPSHOT, "error", True, Verdict.FAILED),
        (CREATE, None, False, Verdict.WAIT),
    ],
)
def test_verdicts(transition, status, seen, verdict) -> None:  # type: ignore[no-untyped-def]
    assert transition.judge(status, seen) is verdict


def test_polls_grow_from_short_to_the_cap_with_jitter() -> None:
    delays = PollDelays(rng=random.Random(7))
    seen = [delays.next(events_live=False) for _ in range(20)]
    assert 0.04 <= seen[0] <= 0.06
    # growing (never shrinking by more than the jitter: 0.8 / 1.2)
    assert all(b >= a * 0.66 for a, b in itertools.pairwise(seen))
    assert max(seen) <= PollDelays.MAX_POLLING * 1.2
    assert seen[-1] >= PollDelays.MAX_POLLING * 0.8
    assert len({round(d, 6) for d in seen[-5:]}) > 1  # jittered, not in lockstep


def test_with_live_events_a_poll_is_a_rare_safety_net() -> None:
    delays = PollDelays(rng=random.Random(1))
    first = delays.next(events_live=True)
    assert PollDelays.MIN_WITH_EVENTS * 0.8 <= first <= PollDelays.MIN_WITH_EVENTS * 1.2
    late = [delays.next(events_live=True) for _ in range(20)][-1]
    assert late <= PollDelays.MAX_WITH_EVENTS * 1.2 and late >= PollDelays.MAX_WITH_EVENTS * 0.8


def test_a_caller_cap_bounds_every_delay() -> None:
    delays = PollDelays(max_delay=0.01, rng=random.Random(3))
    assert all(delays.next(events_live=live) <= 0.012 for live in (True, False) * 10)


def test_snapshot_names_are_fresh_and_valid() -> None:
    names = {new_snapshot_name() for _ in range(100)}
    assert len(names) == 100
    assert all(n.startswith("snapshot-") and n.replace("-", "").isalnum() for n in names)
