"""Leases: keep a capsule from being auto-paused exactly while work runs.

The platform pauses a capsule after ``timeout_sec`` seconds without an exec or a
ping; file transfers, port traffic and a long command's silence do not count. A lease
pings on a schedule derived from the capsule's own ``timeout_sec`` for as long as its
block runs, beside it (a task, or a thread in the blocking client).
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from .._compat import AsyncBackground, AsyncNotice
from .._constants import LEASE_MIN_PING_INTERVAL, PINGS_PER_TIMEOUT
from .._exceptions import (
    WrennAPIStatusError,
    WrennCapsuleStateError,
    WrennConnectionError,
    WrennError,
)
from .._logs import logger
from .._validate import positive_seconds

if TYPE_CHECKING:
    from .capsules import AsyncCapsules


class AsyncLease:
    """``async with capsules.lease(id):`` pings the capsule as the block starts, then
    while it runs.

    ``every`` sets the interval; by default it is a third of the capsule's
    ``timeout_sec`` (a capsule without auto-pause needs no pings, and gets none).
    Pinging only resets the inactivity timer, so a lease never shortens a longer TTL.
    A failed ping that may pass (a dropped connection, a 5xx, a 429) is retried at the
    next tick; one that will not (the capsule is gone or not running) ends the lease
    and is raised when the block ends, as ``WrennCapsuleStateError`` (code
    ``lease_lost``), unless the block raised first.
    """

    def __init__(self, capsules: AsyncCapsules, capsule_id: str, every: float | None) -> None:
        self._capsules = capsules
        self._capsule_id = capsule_id
        self._every = None if every is None else positive_seconds(every, "every")
        self._interval = 0.0
        self._stop = AsyncNotice()
        self._background: AsyncBackground | None = None
        self.pings = 0
        self.error: WrennError | None = None

    async def __aenter__(self) -> AsyncLease:
        interval = self._every
        if interval is None:
            timeout = (await self._capsules.get(self._capsule_id)).timeout_sec or 0
            if timeout <= 0:
                return self  # never auto-paused: nothing to keep alive
            interval = max(LEASE_MIN_PING_INTERVAL, timeout / PINGS_PER_TIMEOUT)
        self._interval = interval
        self._background = AsyncBackground(self._run, self._stop.give)
        await self._background.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        background, self._background = self._background, None
        if background is not None:
            await background.__aexit__(exc_type, exc, tb)
        if self.error is not None:
            if exc is None:
                raise WrennCapsuleStateError(
                    "lease_lost",
                    f"the lease on capsule {self._capsule_id} ended: {self.error.message}",
                    capsule_id=self._capsule_id,
                ) from self.error
            logger.warning("the lease on capsule %s ended: %s", self._capsule_id, self.error)

    async def _run(self) -> None:
        # The first ping goes out at once: the capsule's idle clock has been running
        # since its last exec or ping, not since the block was entered.
        stopped = False
        while not stopped:
            try:
                await self._capsules.ping(self._capsule_id)
                self.pings += 1
            except (WrennConnectionError, WrennAPIStatusError) as exc:
                if not _passing(exc):
                    self.error = exc
                    return
                logger.info("lease ping of %s failed, retrying: %s", self._capsule_id, exc)
            except WrennError as exc:
                self.error = exc
                return
            stopped = await self._stop.wait(self._interval)


class AsyncLeaseHold:
    """An optional lease (``keepalive=True``) held for one ``async with`` block of a
    stream, a terminal or a transfer.

    The lease starts and ends in that block and nowhere else: its task group must
    close in the task and the scope that opened it, so an object that needs one but
    is used without the block raises instead of holding a lease nobody ends.
    """

    def __init__(self, lease: AsyncLease | None) -> None:
        self._lease = lease
        self._held = False

    def require_block(self, what: str) -> None:
        if self._lease is not None and not self._held:
            raise RuntimeError(f"keepalive=True needs the {what} used as a context manager")

    async def enter(self) -> None:
        if self._lease is not None and not self._held:
            await self._lease.__aenter__()
            self._held = True

    async def exit(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        lease, self._lease = self._lease, None
        if lease is not None and self._held:
            self._held = False
            await lease.__aexit__(exc_type, exc, tb)


def _passing(exc: WrennError) -> bool:
    if isinstance(exc, WrennConnectionError):
        return True
    status = exc.status_code or 0
    return status == 429 or status >= 500
