"""``client.capsules``: the capsule lifecycle on the control plane."""

from __future__ import annotations

import builtins
import datetime as _dt
import time
from collections.abc import Iterable

from .._compat import asleep
from .._constants import (
    CREATE_READ_TIMEOUT,
    DEFAULT_WAIT_TIMEOUT,
    PAUSE_RESUME_READ_TIMEOUT,
    WAIT_POLL_INTERVAL,
)
from .._exceptions import WrennCapsuleStateError, WrennTimeoutError
from .._models import (
    Capsule,
    CapsuleMetrics,
    CapsuleStats,
    CreateCapsuleRequest,
    Status,
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
_FAILED = frozenset({Status.error, Status.stopped, Status.missing})


class AsyncCapsules(AsyncAPIResource):
    """Create, inspect, pause, resume and destroy capsules."""

    async def create(
        self,
        template: str | None = None,
        vcpus: int | None = None,
        memory_mb: int | None = None,
        timeout_sec: int | None = None,
        *,
        metadata: dict[str, str] | None = None,
    ) -> Capsule:
        """Create a capsule and return it.

        Args:
            template: template or snapshot name to boot from (the server's default if omitted).
            vcpus: virtual CPUs (ignored by the server when booting from a snapshot).
            memory_mb: memory in MiB (ignored by the server when booting from a snapshot).
            timeout_sec: inactivity seconds before the capsule is auto-paused; 0 disables it.
            metadata: string labels stored with the capsule.

        Creating is not retried after the request may have reached the server, so a
        failure never leaves a second, unknown capsule behind.
        """
        body = CreateCapsuleRequest(
            template=optional_str(template, "template"),
            vcpus=optional_int(vcpus, "vcpus", minimum=1),
            memory_mb=optional_int(memory_mb, "memory_mb", minimum=1),
            timeout_sec=optional_int(timeout_sec, "timeout_sec"),
            metadata=string_map(metadata, "metadata"),
        )
        response = await self._requester.request(
            self._client._options,
            "POST",
            "/v1/capsules",
            ok=(201, 200),
            content=json_encoder.encode(body),
            headers=_JSON,
            read_timeout=CREATE_READ_TIMEOUT,
        )
        return decode(capsule_decoder, response)

    async def list(self) -> builtins.list[Capsule]:
        """List the team's capsules, newest first (stopped and failed ones are not listed)."""
        response = await self._requester.request(self._client._options, "GET", "/v1/capsules")
        return decode(capsule_list_decoder, response)

    async def get(self, id: str) -> Capsule:
        """Return one capsule, in any status."""
        path = build_path("/v1/capsules/{id}", id=id)
        response = await self._requester.request(self._client._options, "GET", path)
        return decode(capsule_decoder, response)

    async def destroy(self, id: str) -> None:
        """Destroy a capsule. Destroying an already stopped capsule succeeds."""
        path = build_path("/v1/capsules/{id}", id=id)
        await self._requester.request(
            self._client._options, "DELETE", path, ok=(204, 200), missing_ok_on_retry=True
        )

    async def pause(self, id: str) -> Capsule:
        """Pause a running capsule (its memory state is snapshotted) and return it."""
        path = build_path("/v1/capsules/{id}/pause", id=id)
        response = await self._requester.request(
            self._client._options, "POST", path, read_timeout=PAUSE_RESUME_READ_TIMEOUT
        )
        return decode(capsule_decoder, response)

    async def resume(self, id: str) -> Capsule:
        """Resume a paused capsule and return it."""
        path = build_path("/v1/capsules/{id}/resume", id=id)
        response = await self._requester.request(
            self._client._options, "POST", path, read_timeout=PAUSE_RESUME_READ_TIMEOUT
        )
        return decode(capsule_decoder, response)

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
        """Poll until the capsule reaches ``status`` (one status or several) and return it.

        Raises ``WrennTimeoutError`` when ``timeout`` seconds pass first, and
        ``WrennCapsuleStateError`` when the capsule lands in ``error``, ``stopped`` or
        ``missing`` and that is not what was asked for.
        """
        targets = {status} if isinstance(status, str) else set(status)
        if not targets or not all(isinstance(t, str) for t in targets):
            raise TypeError("status must be a status string or an iterable of them")
        positive_seconds(timeout, "timeout")
        positive_seconds(interval, "interval")
        deadline = time.monotonic() + timeout
        while True:
            capsule = await self.get(id)
            current = capsule.status
            if current is not None and current.value in targets:
                return capsule
            if current in _FAILED:
                raise WrennCapsuleStateError(
                    "unexpected_state",
                    f"capsule {capsule.id} is {current.value}, waiting for {', '.join(sorted(targets))}",
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                last = current.value if current is not None else "unknown"
                raise WrennTimeoutError(
                    f"capsule {capsule.id} did not reach {', '.join(sorted(targets))} "
                    f"within {timeout:g} s (last status: {last})"
                )
            await asleep(min(interval, remaining))
