"""A lease keeps a capsule with a short ``timeout_sec`` running through a long file-only job.

The platform (and ``wrenn.local``) pauses a capsule after ``timeout_sec`` seconds without
an exec or a ping; file transfers do not count. This soak creates a capsule with that
timeout on a ``wrenn.local.LocalServer``, holds ``capsule.lease()`` while it only uploads
and downloads files for ``--seconds``, and checks the capsule's status every few seconds.
Beside it a control capsule runs the same job without a lease and must be paused, or the
soak would prove nothing. Both capsules are destroyed and the server stopped on exit.

    .venv/bin/python bench/lease_soak.py                  # 180 s, timeout_sec=60
    .venv/bin/python bench/lease_soak.py --seconds 90 --timeout-sec 60

Prints one verdict line; exits 1 on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from wrenn import Capsule, WrennConflictError, WrennError
from wrenn.local import LocalServer

CHECK_EVERY = 5.0  # seconds between status checks
PAYLOAD = 64 * 1024
# The control must be paused within timeout_sec plus the server's TTL check interval
# (2 s) plus slack for a loaded machine.
CONTROL_SLACK = 30.0


@dataclass
class Run:
    """What one capsule's job saw."""

    transfers: int = 0
    checks: int = 0
    statuses: list[str] = field(default_factory=list)
    left_running_after: float | None = None  # seconds into the job
    pings: int = 0
    error: str | None = None
    capsule_id: str = "?"


def check(capsule: Capsule, run: Run, elapsed: float) -> str:
    status = capsule.get_info().status.value  # a GET does not reset the timer
    run.checks += 1
    run.statuses.append(status)
    if status != "running" and run.left_running_after is None:
        run.left_running_after = elapsed
    return status


def job(capsule: Capsule, run: Run, seconds: float, stop_when_not_running: bool) -> None:
    """Only move files for ``seconds``: write a file, read it back, compare; check the status."""
    start = time.monotonic()
    next_check = start
    blob = os.urandom(PAYLOAD)
    while (now := time.monotonic()) - start < seconds:
        if now >= next_check:
            next_check = now + CHECK_EVERY
            if check(capsule, run, now - start) != "running" and stop_when_not_running:
                return
        if run.left_running_after is not None:
            time.sleep(min(CHECK_EVERY, max(0.0, next_check - now)))
            continue  # a paused capsule takes no files: only keep watching
        path = f"/workspace/soak-{run.transfers % 4}.bin"
        try:
            capsule.files.write(path, blob)
            data = capsule.files.read_bytes(path)
        except WrennConflictError:
            # 409: no longer running, between two checks. Say what it became.
            status = check(capsule, run, time.monotonic() - start)
            if stop_when_not_running and status != "running":
                return
            raise RuntimeError(
                f"a transfer got 409 at {time.monotonic() - start:.0f} s, status {status}"
            )
        if data != blob:
            raise RuntimeError(f"{path} came back different")
        run.transfers += 2
        time.sleep(0.2)


@contextlib.contextmanager
def capsule_on(server: LocalServer, run: Run, timeout_sec: int) -> Iterator[Capsule]:
    with Capsule(timeout=timeout_sec, api_key=server.api_key, base_url=server.base_url) as capsule:
        info = capsule.get_info()
        run.capsule_id = info.id
        if info.timeout_sec != timeout_sec:
            raise RuntimeError(f"the capsule has timeout_sec={info.timeout_sec}, not {timeout_sec}")
        yield capsule


def leased(server: LocalServer, run: Run, seconds: float, timeout_sec: int) -> None:
    try:
        with capsule_on(server, run, timeout_sec) as capsule, capsule.lease() as lease:
            try:
                job(capsule, run, seconds, stop_when_not_running=False)
            finally:
                run.pings = lease.pings
    except (WrennError, RuntimeError) as exc:
        run.error = f"{type(exc).__name__}: {exc} (statuses seen: {run.statuses[-3:]})"


def control(server: LocalServer, run: Run, seconds: float, timeout_sec: int) -> None:
    try:
        with capsule_on(server, run, timeout_sec) as capsule:
            job(capsule, run, seconds, stop_when_not_running=True)
    except (WrennError, RuntimeError) as exc:
        run.error = f"{type(exc).__name__}: {exc}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="length of the job")
    parser.add_argument("--timeout-sec", type=int, default=60, help="the capsule's timeout_sec")
    parser.add_argument(
        "--no-control", action="store_true", help="skip the capsule without a lease"
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.timeout_sec < 1:
        parser.error("--seconds must be > 0 and --timeout-sec >= 1")

    with_lease, without = Run(), Run()
    control_seconds = args.timeout_sec + CONTROL_SLACK
    with LocalServer() as server:
        timeout_sec = max(args.timeout_sec, 60)  # the server clamps 1..59 to 60, as the API says
        threads = [
            threading.Thread(target=leased, args=(server, with_lease, args.seconds, timeout_sec))
        ]
        if not args.no_control:
            threads.append(
                threading.Thread(
                    target=control, args=(server, without, control_seconds, timeout_sec)
                )
            )
        for thread in threads:
            thread.start()
        for thread in threads:
            # Bounded: each job ends on its own clock; this is only a safety net.
            thread.join(max(args.seconds, control_seconds) + 120)
        if any(thread.is_alive() for thread in threads):
            print("lease_soak: FAIL - a job did not finish in time", flush=True)
            return 1

    problems = []
    if with_lease.error:
        problems.append(f"leased job failed: {with_lease.error}")
    if with_lease.left_running_after is not None:
        problems.append(f"leased capsule left running after {with_lease.left_running_after:.0f} s")
    if not with_lease.checks:
        problems.append("leased capsule was never checked")
    leased_part = (
        f"with a lease ({with_lease.capsule_id}, timeout_sec={timeout_sec}, "
        f"{args.seconds:g} s of file transfers only): "
        f"status {'never left' if with_lease.left_running_after is None else 'LEFT'} running "
        f"in {with_lease.checks} checks, {with_lease.pings} pings sent, "
        f"{with_lease.transfers} transfers"
    )
    control_part = "control skipped"
    if not args.no_control:
        if without.error:
            problems.append(f"control job failed: {without.error}")
        elif without.left_running_after is None:
            problems.append(f"control capsule was not paused within {control_seconds:g} s")
        last = without.statuses[-1] if without.statuses else "?"
        after = (
            "never" if without.left_running_after is None else f"{without.left_running_after:.0f} s"
        )
        control_part = (
            f"control without a lease ({without.capsule_id}): {last} after {after} "
            f"({without.transfers} transfers)"
        )
    verdict = "PASS" if not problems else "FAIL (" + "; ".join(problems) + ")"
    print(f"lease_soak: {verdict} - {leased_part}; {control_part}", flush=True)
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
