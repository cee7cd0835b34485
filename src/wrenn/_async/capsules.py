"""``client.capsules``: the capsule lifecycle on the control plane."""

from __future__ import annotations

import builtins
import datetime as _dt
from collections.abc import Iterable

from .._compat import AsyncCleanupScope
from .._constants import (
    ABANDON_TIMEOUT,
    CREATE_READ_TIMEOUT,
    DEFAULT_TRANSITION_TIMEOUT,
    DEFAULT_WAIT_TIMEOUT,
    PAUSE_RESUME_READ_TIMEOUT,
    WAIT_POLL_INTERVAL,
)
from .._exceptions import WrennConflictError, WrennError, WrennNotFoundError
from .._lifecycle import CREATE, DESTROY, KNOWN, PAUSE, RESUME, SETTLE, Transition
from .._logs import logger
from .._models import (
    Capsule,
    CapsuleMetrics,
    CapsuleStats,
    CreateCapsuleRequest,
    UsageResponse,
    capsule_decoder,
    capsule_list_decoder,
    json_encoder,
    metrics_decoder,
    stats_decoder,
    usage_decoder,
)
from .._responses import decode
from .._urls import build_path
from .._validate import optional_date, optional_int, optional_str, positive_seconds, string_map
from ._resource import AsyncAPIResource

_JSON = {"Content-Type": "application/json"}
_FAILED = frozenset({"error", "stopped", "missing"})


class AsyncCapsules(AsyncAPIResource):
    """Create, inspect, pause, resume and destroy capsules.

    The platform (API 0.2.2) answers lifecycle calls with 202 and finishes them in the
    background. ``create``, ``pause``, ``resume`` and ``destroy`` therefore wait, by
    default, until the capsule has settled (``wait=False`` returns the 202 answer at
    once), bounded by ``wait_timeout`` seconds (``WrennTimeoutError`` past it). A
    capsule that lands somewhere the call cannot end raises ``WrennCapsuleStateError``.
    Servers that still answer 200/201/204 with the final state work the same way.
    """

    async def create(
        self,
        template: str | None = None,
        vcpus: int | None = None,
        memory_mb: int | None = None,
        timeout_sec: int | None = None,
        *,
        metadata: dict[str, str] | None = None,
        wait: bool = True,
        wait_timeout: float = DEFAULT_TRANSITION_TIMEOUT,
    ) -> Capsule:
        """Create a capsule and return it, running (or as the server answered, with ``wait=False``).

        Args:
            template: template or snapshot name to boot from (the server's default if omitted).
            vcpus: virtual CPUs (ignored by the server when booting from a snapshot).
            memory_mb: memory in MiB (ignored by the server when booting from a snapshot).
            timeout_sec: inactivity seconds before the capsule is auto-paused; 0 disables it.
            metadata: string labels stored with the capsule (at most 20 keys; keys of
                letters, digits, ``.``, ``_`` and ``-``; values of at most 64 characters).
            wait: wait until the capsule is running.
            wait_timeout: seconds to wait for it.

        Creating is not retried after the request may have reached the server, so a
        failure never leaves a second, unknown capsule behind. If the wait fails or is
        cancelled, the capsule is destroyed: nothing is left running that you hold no
        handle to. Pass ``wait=False`` to manage a starting capsule yourself.
        """
        body = CreateCapsuleRequest(
            template=optional_str(template, "template"),
            vcpus=optional_int(vcpus, "vcpus", minimum=1),
            memory_mb=optional_int(memory_mb, "memory_mb", minimum=1),
            timeout_sec=optional_int(timeout_sec, "timeout_sec"),
            metadata=string_map(metadata, "metadata"),
        )
        wait_timeout = positive_seconds(wait_timeout, "wait_timeout")
        response = await self._requester.request(
            self._client._options,
            "POST",
            "/v1/capsules",
            ok=(202, 201, 200),
            content=json_encoder.encode(body),
            headers=_JSON,
            read_timeout=CREATE_READ_TIMEOUT,
        )
        capsule = decode(capsule_decoder, response)
        if not wait:
            return capsule
        try:
            settled = await self._settle(capsule.id, CREATE, capsule, wait_timeout)
        except BaseException:
            await self._discard(capsule.id)
            raise
        assert settled is not None
        return settled

    async def list(self) -> builtins.list[Capsule]:
        """List the team's capsules, newest first (stopped and failed ones are not listed)."""
        response = await self._requester.request(self._client._options, "GET", "/v1/capsules")
        return decode(capsule_list_decoder, response)

    async def get(self, id: str) -> Capsule:
        """Return one capsule, in any status."""
        path = build_path("/v1/capsules/{id}", id=id)
        response = await self._requester.request(self._client._options, "GET", path)
        return decode(capsule_decoder, response)

    async def destroy(
        self, id: str, *, wait: bool = True, wait_timeout: float = DEFAULT_TRANSITION_TIMEOUT
    ) -> None:
        """Destroy a capsule; by default wait until it is stopped (or gone).

        Destroying an already stopped capsule succeeds.
        """
        path = build_path("/v1/capsules/{id}", id=id)
        wait_timeout = positive_seconds(wait_timeout, "wait_timeout")
        response = await self._requester.request(
            self._client._options, "DELETE", path, ok=(202, 204, 200), missing_ok_on_retry=True
        )
        # 202 is API 0.2.2's "stopping has begun"; 204 is an older server's "destroyed".
        if wait and response.status_code == 202:
            await self._settle(id, DESTROY, None, wait_timeout)

    async def pause(
        self, id: str, *, wait: bool = True, wait_timeout: float = DEFAULT_TRANSITION_TIMEOUT
    ) -> Capsule:
        """Pause a running capsule (its memory state is snapshotted); return it paused.

        With ``wait=False``, return the server's answer at once (``pausing`` on API 0.2.2).
        """
        return await self._act(id, "pause", PAUSE, wait, wait_timeout)

    async def resume(
        self, id: str, *, wait: bool = True, wait_timeout: float = DEFAULT_TRANSITION_TIMEOUT
    ) -> Capsule:
        """Resume a paused capsule; return it running.

        With ``wait=False``, return the server's answer at once (``resuming`` on API 0.2.2).
        """
        return await self._act(id, "resume", RESUME, wait, wait_timeout)

    async def _act(
        self, id: str, verb: str, transition: Transition, wait: bool, wait_timeout: float
    ) -> Capsule:
        path = build_path("/v1/capsules/{id}/" + verb, id=id)
        wait_timeout = positive_seconds(wait_timeout, "wait_timeout")
        response = await self._requester.request(
            self._client._options,
            "POST",
            path,
            ok=(202, 200),
            read_timeout=PAUSE_RESUME_READ_TIMEOUT,
        )
        capsule = decode(capsule_decoder, response)
        if not wait:
            return capsule
        settled = await self._settle(capsule.id, transition, capsule, wait_timeout)
        assert settled is not None
        return settled

    async def _settle(
        self,
        id: str,
        transition: Transition,
        first: Capsule | None,
        timeout: float,
        max_delay: float | None = None,
    ) -> Capsule | None:
        return await self._client._transitions.settle(id, transition, first, timeout, max_delay)

    async def _discard(self, id: str) -> None:
        """Destroy a capsule during cleanup (a failed or cancelled create, leaving a
        ``with`` block): bounded in time, shielded from cancellation, never raises.

        A capsule in the middle of a transition may refuse to be destroyed (409, e.g.
        while ``starting``): it is then left to settle and destroyed after that.
        """
        with AsyncCleanupScope(ABANDON_TIMEOUT):
            try:
                try:
                    await self.destroy(id, wait=False)
                except WrennConflictError:
                    await self._settle(id, SETTLE, None, ABANDON_TIMEOUT)
                    await self.destroy(id, wait=False)
            except WrennNotFoundError:
                pass
            except WrennError as exc:
                logger.warning("could not destroy capsule %s: %s", id, exc)

    async def ping(self, id: str) -> None:
        """Reset a running capsule's inactivity timer."""
        path = build_path("/v1/capsules/{id}/ping", id=id)
        await self._requester.request(self._client._options, "POST", path, ok=(204, 200))

    async def stats(self, range: str | None = None) -> CapsuleStats:
        """Team-wide running counts and reservations over ``range`` (5m, 1h, 6h, 24h, 30d)."""
        params = {"range": str(optional_str(range, "range"))} if range is not None else None
        response = await self._requester.request(
            self._client._options, "GET", "/v1/capsules/stats", params=params
        )
        return decode(stats_decoder, response)

    async def usage(
        self, from_: str | _dt.date | None = None, to: str | _dt.date | None = None
    ) -> UsageResponse:
        """Daily CPU and memory usage between two dates (``YYYY-MM-DD`` or ``date``)."""
        params: dict[str, str] = {}
        start, end = optional_date(from_, "from_"), optional_date(to, "to")
        if start is not None:
            params["from"] = start
        if end is not None:
            params["to"] = end
        response = await self._requester.request(
            self._client._options, "GET", "/v1/capsules/usage", params=params or None
        )
        return decode(usage_decoder, response)

    async def metrics(self, id: str, range: str | None = None) -> CapsuleMetrics:
        """CPU, memory and disk samples of one capsule over ``range`` (5m ... 24h)."""
        path = build_path("/v1/capsules/{id}/metrics", id=id)
        params = {"range": str(optional_str(range, "range"))} if range is not None else None
        response = await self._requester.request(self._client._options, "GET", path, params=params)
        return decode(metrics_decoder, response)

    async def wait(
        self,
        id: str,
        status: str | Iterable[str] = "running",
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        interval: float = WAIT_POLL_INTERVAL,
    ) -> Capsule:
        """Wait until the capsule reaches ``status`` (one status or several) and return it.

        Looks at the capsule at most every ``interval`` seconds, sooner when the event
        stream reports a change. Raises ``WrennTimeoutError`` when ``timeout`` seconds
        pass first, and ``WrennCapsuleStateError`` when the capsule lands in ``error``,
        ``stopped`` or ``missing`` and that is not what was asked for.
        """
        targets = {status} if isinstance(status, str) else set(status)
        if not targets or not all(isinstance(t, str) for t in targets):
            raise TypeError("status must be a status string or an iterable of them")
        positive_seconds(timeout, "timeout")
        positive_seconds(interval, "interval")
        transition = Transition(
            "wait",
            targets=frozenset(targets),
            passing=KNOWN - _FAILED - targets,
        )
        settled = await self._settle(id, transition, None, timeout, interval)
        assert settled is not None
        return settled
