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
from .._exceptions import (
    WrennConflictError,
    WrennError,
    WrennNotFoundError,
    WrennTimeoutError,
)
from .._labels import label_value, new_token, stamp
from .._lifecycle import CREATE, DESTROY, KNOWN, PAUSE, RESUME, SETTLE, Transition
from .._logs import logger
from .._models_base import json_encoder
from .._models_control import (
    Capsule,
    CapsuleMetrics,
    CapsuleStats,
    CreateCapsuleRequest,
    UsageResponse,
    capsule_decoder,
    capsule_list_decoder,
    metrics_decoder,
    stats_decoder,
    usage_decoder,
)
from .._responses import decode
from .._urls import build_path, path_param
from .._validate import optional_date, optional_int, optional_str, positive_seconds, string_map
from ._ownership import bring_up, discard_created, may_have_created, named, reapable
from ._resource import AsyncAPIResource
from .lease import AsyncLease

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
        namespace: str | None = None,
        name: str | None = None,
        wait: bool = True,
        wait_timeout: float = DEFAULT_TRANSITION_TIMEOUT,
    ) -> Capsule:
        """Create a capsule and return it, running (or as the server answered, with ``wait=False``).

        Args:
            template: template or snapshot name to boot from (the server's default if omitted).
            vcpus: virtual CPUs (ignored by the server when booting from a snapshot).
            memory_mb: memory in MiB (ignored by the server when booting from a snapshot).
            timeout_sec: inactivity seconds before the capsule is auto-paused; 0 disables it.
            metadata: string labels stored with the capsule (keys of letters, digits, ``.``,
                ``_`` and ``-``; values of at most 64 characters; at most 16 keys, since the
                SDK adds its own ``wrenn.*`` labels).
            namespace: a label that ``reap(namespace=...)`` and ``get_or_create`` select on.
            name: a label that ``get_or_create(name)`` finds the capsule by.
            wait: wait until the capsule is running.
            wait_timeout: seconds to wait for it.

        Creating is not retried after the request may have reached the server, so a
        failure never leaves a second, unknown capsule behind. If the answer is lost or
        the call is cancelled after the request was sent, the capsule is looked up by
        the unique label this call gave it and destroyed; if the wait fails or is
        cancelled, the capsule is destroyed too: nothing is left running that you hold
        no handle to. Pass ``wait=False`` to manage a starting capsule yourself.
        """
        token = new_token()
        body = CreateCapsuleRequest(
            template=optional_str(template, "template"),
            vcpus=optional_int(vcpus, "vcpus", minimum=1),
            memory_mb=optional_int(memory_mb, "memory_mb", minimum=1),
            timeout_sec=optional_int(timeout_sec, "timeout_sec"),
            metadata=stamp(
                string_map(metadata, "metadata"), token=token, namespace=namespace, name=name
            ),
        )
        wait_timeout = positive_seconds(wait_timeout, "wait_timeout")
        try:
            response = await self._request(
                "POST",
                "/v1/capsules",
                ok=(202, 201, 200),
                content=json_encoder.encode(body),
                headers=_JSON,
                read_timeout=CREATE_READ_TIMEOUT,
            )
        except BaseException as exc:
            if may_have_created(exc):
                await discard_created(self, token)
            raise
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

    async def get_or_create(
        self,
        name: str,
        template: str | None = None,
        vcpus: int | None = None,
        memory_mb: int | None = None,
        timeout_sec: int | None = None,
        *,
        namespace: str | None = None,
        metadata: dict[str, str] | None = None,
        wait_timeout: float = DEFAULT_TRANSITION_TIMEOUT,
    ) -> Capsule:
        """The running capsule labelled ``name`` (in ``namespace``): resumed if it is
        paused, waited for if it is in a transition, created if there is none.

        Callers of one client get the same capsule, however many call at once. Across
        clients or processes the API offers no atomic "create if absent" (there is no
        idempotency key), so two creates can race; the name label makes that visible:
        the oldest capsule of that name is returned, and a warning names the others.
        """
        label_value(name, "name")
        async with self._client._name_lock(namespace, name):
            for _ in range(3):  # a capsule that fails while being brought up is replaced
                found = await named(self, name, namespace)
                if found is None:
                    break
                ready = await bring_up(self, found, wait_timeout)
                if ready is not None:
                    return ready
            return await self.create(
                template,
                vcpus,
                memory_mb,
                timeout_sec,
                metadata=metadata,
                namespace=namespace,
                name=name,
                wait_timeout=wait_timeout,
            )

    async def reap(
        self,
        namespace: str | None = None,
        *,
        older_than: float | _dt.timedelta | None = None,
        dry_run: bool = False,
        include_own: bool = False,
    ) -> builtins.list[Capsule]:
        """Destroy what crashed programs left behind; return the capsules it destroyed.

        Only capsules this SDK created (labelled ``wrenn.owner``) in ``namespace`` (None:
        those created without one) are touched; never another namespace's, never one
        created otherwise. ``older_than`` (seconds or a ``timedelta``) spares the young;
        this process's own capsules are spared unless ``include_own``. With ``dry_run``,
        nothing is destroyed and the list says what would be.
        """
        if namespace is not None:
            label_value(namespace, "namespace")
        if isinstance(older_than, _dt.timedelta):
            older_than = older_than.total_seconds()
        if older_than is not None:
            older_than = positive_seconds(older_than, "older_than")
        doomed = reapable(await self.list(), namespace, older_than, include_own)
        if not dry_run:
            for capsule in doomed:
                await self._discard(capsule.id)
        return doomed

    async def list(self) -> builtins.list[Capsule]:
        """List the team's capsules, newest first (stopped and failed ones are not listed)."""
        response = await self._request("GET", "/v1/capsules")
        return decode(capsule_list_decoder, response)

    async def get(self, id: str) -> Capsule:
        """Return one capsule, in any status."""
        path = build_path("/v1/capsules/{id}", id=id)
        response = await self._request("GET", path)
        return decode(capsule_decoder, response)

    async def destroy(
        self, id: str, *, wait: bool = True, wait_timeout: float = DEFAULT_TRANSITION_TIMEOUT
    ) -> None:
        """Destroy a capsule; by default wait until it is stopped (or gone).

        Destroying an already stopped capsule succeeds.
        """
        path = build_path("/v1/capsules/{id}", id=id)
        wait_timeout = positive_seconds(wait_timeout, "wait_timeout")
        response = await self._request("DELETE", path, ok=(202, 204, 200), missing_ok_on_retry=True)
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
        response = await self._request(
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

    async def _discard(self, id: str, *, until_stopped: bool = False) -> None:
        """Destroy a capsule during cleanup (a failed or cancelled create, leaving a
        ``with`` block): bounded in time, shielded from cancellation, never raises.

        A capsule in the middle of a transition may refuse to be destroyed (409, e.g.
        while ``starting``): it is then left to settle and destroyed after that. With
        ``until_stopped``, also wait (within the same bound) until it is stopped.
        """
        with AsyncCleanupScope(ABANDON_TIMEOUT):
            try:
                try:
                    await self.destroy(id, wait=until_stopped, wait_timeout=ABANDON_TIMEOUT)
                except WrennConflictError:
                    await self._settle(id, SETTLE, None, ABANDON_TIMEOUT)
                    await self.destroy(id, wait=until_stopped, wait_timeout=ABANDON_TIMEOUT)
            except WrennNotFoundError:
                pass
            except WrennTimeoutError:
                logger.info("capsule %s is still stopping after %g s", id, ABANDON_TIMEOUT)
            except WrennError as exc:
                logger.warning("could not destroy capsule %s: %s", id, exc)

    def lease(self, id: str, *, every: float | None = None) -> AsyncLease:
        """Keep the capsule from auto-pausing while a block runs (see ``AsyncLease``)::

        async with client.capsules.lease(capsule.id):
            ...  # a long job that only moves files
        """
        return AsyncLease(self, path_param(id, "id"), every)

    async def ping(self, id: str) -> None:
        """Reset a running capsule's inactivity timer."""
        path = build_path("/v1/capsules/{id}/ping", id=id)
        await self._request("POST", path, ok=(204, 200))

    async def stats(self, range: str | None = None) -> CapsuleStats:
        """Team-wide running counts and reservations over ``range`` (5m, 1h, 6h, 24h, 30d)."""
        params = {"range": str(optional_str(range, "range"))} if range is not None else None
        response = await self._request("GET", "/v1/capsules/stats", params=params)
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
        response = await self._request("GET", "/v1/capsules/usage", params=params or None)
        return decode(usage_decoder, response)

    async def metrics(self, id: str, range: str | None = None) -> CapsuleMetrics:
        """CPU, memory and disk samples of one capsule over ``range`` (5m ... 24h)."""
        path = build_path("/v1/capsules/{id}/metrics", id=id)
        params = {"range": str(optional_str(range, "range"))} if range is not None else None
        response = await self._request("GET", path, params=params)
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
        return await self._wait_status(id, status, timeout, positive_seconds(interval, "interval"))

    async def wait_for(
        self,
        capsule_id: str,
        status: str | Iterable[str] = "running",
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
    ) -> Capsule:
        """Wait until the capsule reaches ``status`` (one status or several) and return it.

        Built on the client's one shared event stream (reconnected after a drop, and
        every lifecycle wait of the client rides on it too): an event about the capsule
        wakes the wait at once, and a GET confirms it, so a lost or late event costs
        time, never a wrong answer. Without a usable stream (an old server, a proxy
        that buffers) the capsule is polled with growing, jittered delays. Raises
        ``WrennTimeoutError`` after ``timeout`` seconds, ``WrennCapsuleStateError``
        when the capsule lands in ``error``, ``stopped`` or ``missing`` and that is not
        what was asked for.
        """
        if not isinstance(capsule_id, str) or not capsule_id:
            raise TypeError("capsule_id must be a non-empty str")
        return await self._wait_status(capsule_id, status, timeout, None)

    async def _wait_status(
        self,
        id: str,
        status: str | Iterable[str],
        timeout: float,
        interval: float | None,
    ) -> Capsule:
        targets = {status} if isinstance(status, str) else set(status)
        if not targets or not all(isinstance(t, str) for t in targets):
            raise TypeError("status must be a status string or an iterable of them")
        timeout = positive_seconds(timeout, "timeout")
        transition = Transition(
            "wait",
            targets=frozenset(targets),
            passing=KNOWN - _FAILED - targets,
        )
        settled = await self._settle(id, transition, None, timeout, interval)
        assert settled is not None
        return settled
