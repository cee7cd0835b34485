"""The asynchronous capsule lifecycle of API 0.2.2: create, pause, resume, destroy, snapshot.

A request only validates, moves the capsule into its transitional status
(``starting``, ``pausing``, ``resuming``, ``stopping``, ``snapshotting``) and
answers 202 with that status.  The work is done by a task the server owns,
under the capsule's lock, and ends by settling the status.  So a client never
sees the final status in the 202 body, even with ``transition_delay=0``: the
task cannot run before the response has been built.

Events follow the platform's SSE model: every status change publishes
``capsule.state.changed`` (``metadata.from``/``to``, no outcome), and the end of
each action publishes its action event with ``outcome`` (and ``error`` text).

On server stop, in-flight transitions finish without their artificial delay
(bounded by :data:`SHUTDOWN_GRACE`, then cancelled); a status a cancelled task
left behind is resolved at the next start (:func:`settled_after_restart`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from . import _kernels, _wire
from ._store import CapsuleRow, TemplateRow
from ._validate import field, integer, str_map
from ._wire import ApiError, bad_request, invalid_state, not_found

if TYPE_CHECKING:
    from ._capsules import Manager
    from ._faults import Faults, SlowTransition

log = logging.getLogger("wrenn.local")

DEFAULT_TEMPLATE = "minimal-ubuntu"
MAX_METADATA_KEYS = 20
MAX_METADATA_VALUE = 64
# Bounds of create's numbers: far above any real host, far below int64 overflow.
MAX_VCPUS = 256
MAX_MEMORY_MB = 4 * 1024 * 1024  # 4 TiB
MAX_TIMEOUT_SEC = 2**31 - 1
RESERVED_METADATA = frozenset({"kernel_version", "vmm_version", "agent_version", "envd_version"})
# Statuses a task is working on: every other operation on the capsule waits (409).
TRANSITIONAL = frozenset({"pending", "starting", "pausing", "resuming", "stopping", "snapshotting"})
# GET /v1/capsules lists everything but the terminal statuses.
LISTED = (
    "pending",
    "starting",
    "running",
    "pausing",
    "paused",
    "snapshotting",
    "resuming",
    "stopping",
    "hibernated",
    "missing",
)
SHUTDOWN_GRACE = 10.0
# The SlowTransition fault (and its ticket) that fired for the transition this task runs.
_SLOWED: ContextVar[tuple[SlowTransition, int] | None] = ContextVar("slowed", default=None)


def settled_after_restart(status: str) -> str | None:
    """The status a capsule left mid-transition by a previous server takes at start.

    Processes never survive a restart, so an unfinished boot is an error, an
    unfinished pause, resume or snapshot leaves the files of a paused capsule,
    and an unfinished destroy is finished.
    """
    return {
        "pending": "error",
        "starting": "error",
        "missing": "error",
        "pausing": "paused",
        "resuming": "paused",
        "snapshotting": "paused",
        "stopping": "stopped",
    }.get(status)


class Lifecycle:
    def __init__(self, manager: Manager, transition_delay: float = 0.0) -> None:
        self.m = manager
        self.transition_delay = transition_delay
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        # Set on shutdown: transitions then skip what is left of their delay.
        self._hurry = asyncio.Event()
        # Names of snapshots being written: taken, although no template exists yet.
        self._snapshot_names: set[str] = set()
        # The server's fault rules (LocalServer sets them): SlowTransition is read here.
        self.faults: Faults | None = None

    # status changes and events ---------------------------------------------------
    def change_status(
        self,
        capsule_id: str,
        new: str,
        *,
        actor: dict[str, str] | None = None,
        reason: str | None = None,
        **fields: Any,
    ) -> CapsuleRow:
        """Store ``new`` (and ``fields``); publish ``capsule.state.changed`` if it changed."""
        before = self.m.store.get_capsule(capsule_id)
        self.m.store.update_capsule(capsule_id, status=new, **fields)
        row = self.m.store.get_capsule(capsule_id)
        assert row is not None
        old = before.status if before is not None else "pending"
        if old != new:
            meta = {"from": old, "to": new, **({"reason": reason} if reason else {})}
            self._publish("capsule.state.changed", row, actor=actor, metadata=meta)
        return row

    def _publish(
        self,
        event: str,
        row: CapsuleRow,
        *,
        actor: dict[str, str] | None,
        metadata: dict[str, str] | None = None,
        outcome: str | None = None,
        error: str | None = None,
    ) -> None:
        self.m.events.publish(
            event,
            row.id,
            "capsule",
            outcome=outcome,
            actor=actor,
            metadata=metadata,
            error=error,
            sandbox=self.m.capsule_json(row),
        )

    def _settle(
        self,
        capsule_id: str,
        status: str,
        action: str,
        actor: dict[str, str] | None,
        *,
        reason: str | None = None,
        error: str | None = None,
        **fields: Any,
    ) -> None:
        """End a transition: the final status, then the action event with its outcome."""
        row = self.change_status(capsule_id, status, actor=actor, reason=reason, **fields)
        self._publish(
            action,
            row,
            actor=actor,
            metadata={"reason": reason} if reason else None,
            outcome="error" if error is not None else "success",
            error=error,
        )

    def _superseded(
        self, capsule_id: str, transitional: str, action: str, actor: dict[str, str] | None
    ) -> bool:
        """True (and the action failed) if the capsule left ``transitional`` while the task
        waited for its lock: the reconciler found its sandbox dead and stopped it."""
        row = self.m.store.get_capsule(capsule_id)
        if row is None or row.status == transitional:
            return row is None
        self._publish(
            action, row, actor=actor, outcome="error", error=f"the capsule is {row.status}"
        )
        return True

    @property
    def in_flight(self) -> int:
        """How many transitions are running (none once the server has stopped)."""
        return len(self._tasks)

    # tasks ------------------------------------------------------------------------
    def _admit(self) -> None:
        if self._closing:
            raise ApiError(503, "host_unavailable", "the server is shutting down")

    def _start(self, capsule_id: str, action: str, work: Callable[[], Awaitable[None]]) -> None:
        # Fired here, before the 202 is answered: a test sees the count at once.
        slowed = self.faults.transition_hold(action, capsule_id) if self.faults else None

        async def run() -> None:
            _SLOWED.set(slowed)
            async with self.m.lock(capsule_id):
                try:
                    await work()
                except Exception:
                    # Each transition settles its own failures, so this is a bug; still,
                    # never leave the capsule in a transitional status for good.
                    log.exception("capsule %s: transition failed", capsule_id)
                    row = self.m.store.get_capsule(capsule_id)
                    if row is not None and row.status in TRANSITIONAL:
                        self.change_status(capsule_id, "error", reason="internal_error")

        task = asyncio.create_task(run(), name=f"wrenn-local transition {capsule_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _hold(self, began: float) -> None:
        """Keep the transitional status for what is left of ``transition_delay``."""
        remaining = self.transition_delay - (time.monotonic() - began)
        slowed = _SLOWED.get()
        if slowed is not None and not self._hurry.is_set():
            rule, ticket = slowed
            await rule._hold(ticket, remaining, self._hurry)
            return
        if remaining > 0 and not self._hurry.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._hurry.wait(), remaining)

    async def shutdown(self) -> None:
        """Refuse new transitions, let running ones finish quickly, cancel stragglers."""
        self._closing = True
        self._hurry.set()
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=SHUTDOWN_GRACE)
        for task in late:
            log.warning("cancelling a capsule transition that did not finish: %s", task.get_name())
            task.cancel()
        for task in late:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # create -----------------------------------------------------------------------
    def create(self, body: dict[str, Any], actor: dict[str, str] | None = None) -> dict[str, Any]:
        template = field(body, "template", str, "") or DEFAULT_TEMPLATE
        vcpus = integer(body, "vcpus", 0, 0, MAX_VCPUS)
        memory_mb = integer(body, "memory_mb", 0, 0, MAX_MEMORY_MB)
        timeout_sec = field(body, "timeout_sec", int, 0)
        metadata = str_map(body, "metadata")
        if not _wire.SAFE_NAME_RE.match(template):
            raise bad_request("invalid template name")
        if timeout_sec < 0:
            raise bad_request("timeout_sec must be >= 0")
        if timeout_sec > MAX_TIMEOUT_SEC:
            raise bad_request(f"timeout_sec must be between 0 and {MAX_TIMEOUT_SEC}")
        _check_metadata(metadata)
        tpl = self.m.store.get_template(template)
        if tpl is None:
            raise not_found()
        if template == _kernels.TEMPLATE and _kernels.missing_packages():
            raise bad_request(_kernels.install_hint())
        self._admit()
        if tpl.type == "snapshot":
            vcpus, memory_mb = tpl.vcpus, tpl.memory_mb
        vcpus = vcpus if vcpus > 0 else 1
        memory_mb = memory_mb if memory_mb > 0 else 512
        # 0 disables auto-pause; positive values below the floor are clamped to it.
        if timeout_sec > 0:
            timeout_sec = max(timeout_sec, self.m.min_timeout_sec)
        now = time.time()
        capsule_id = _wire.new_capsule_id()
        meta = {"agent_version": "wrenn-local", "kernel_version": os.uname().release, **metadata}
        self.m.store.insert_capsule(
            CapsuleRow(
                capsule_id,
                "pending",
                template,
                vcpus,
                memory_mb,
                timeout_sec,
                now,
                None,
                now,
                now,
                meta,
            )
        )
        row = self.change_status(capsule_id, "starting", actor=actor)
        self._start(capsule_id, "create", lambda: self._boot_new(capsule_id, tpl, actor))
        return self.m.capsule_json(row)

    async def _boot_new(
        self, capsule_id: str, tpl: TemplateRow, actor: dict[str, str] | None
    ) -> None:
        began = time.monotonic()
        if self._superseded(capsule_id, "starting", "capsule.create", actor):
            return
        try:
            if tpl.type == "snapshot":
                await self.m.copy_template_files(tpl.name, capsule_id)
            await self.m.boot(capsule_id)
        except Exception as exc:
            await self.m.teardown(capsule_id)
            await self._hold(began)
            self._settle(
                capsule_id, "error", "capsule.create", actor, error=f"create sandbox: {exc}"
            )
            return
        await self._hold(began)
        now = time.time()
        self._settle(
            capsule_id, "running", "capsule.create", actor, started_at=now, last_active_at=now
        )

    # pause / resume ---------------------------------------------------------------
    def pause(
        self, capsule_id: str, actor: dict[str, str] | None = None, reason: str | None = None
    ) -> dict[str, Any]:
        row = self.m.get_row(capsule_id, "resource not found")
        if row.status != "running" or capsule_id not in self.m.live:
            raise invalid_state("resource is not running")
        self._admit()
        row = self.change_status(capsule_id, "pausing", actor=actor, reason=reason)
        self._start(capsule_id, "pause", lambda: self._pause(capsule_id, actor, reason))
        return self.m.capsule_json(row)

    async def _pause(
        self, capsule_id: str, actor: dict[str, str] | None, reason: str | None
    ) -> None:
        began = time.monotonic()
        if self._superseded(capsule_id, "pausing", "capsule.pause", actor):
            return
        live = self.m.live.get(capsule_id)
        try:
            if live is None:
                raise OSError("the sandbox is gone")
            await live.sandbox.freeze()
        except Exception as exc:
            await self._hold(began)
            self._settle(
                capsule_id,
                "running",
                "capsule.pause",
                actor,
                reason=reason,
                error=f"pause sandbox: {exc}",
            )
            return
        await self._hold(began)
        self._settle(capsule_id, "paused", "capsule.pause", actor, reason=reason)

    def resume(self, capsule_id: str, actor: dict[str, str] | None = None) -> dict[str, Any]:
        row = self.m.get_row(capsule_id, "resource not found")
        if row.status != "paused":
            raise invalid_state("resource is not paused")
        self._admit()
        row = self.change_status(capsule_id, "resuming", actor=actor)
        self._start(capsule_id, "resume", lambda: self._resume(capsule_id, actor))
        return self.m.capsule_json(row)

    async def _resume(self, capsule_id: str, actor: dict[str, str] | None) -> None:
        began = time.monotonic()
        if self._superseded(capsule_id, "resuming", "capsule.resume", actor):
            return
        live = self.m.live.get(capsule_id)
        try:
            if live is not None and live.sandbox.alive:
                await live.sandbox.thaw()
            else:
                # Paused before a server restart: the processes are gone, boot cold.
                await self.m.teardown(capsule_id)
                await self.m.boot(capsule_id)
        except Exception as exc:
            await self._hold(began)
            # The files are intact: the capsule stays paused and can be resumed again.
            self._settle(
                capsule_id, "paused", "capsule.resume", actor, error=f"resume sandbox: {exc}"
            )
            return
        await self._hold(began)
        now = time.time()
        self._settle(
            capsule_id, "running", "capsule.resume", actor, started_at=now, last_active_at=now
        )

    # destroy ----------------------------------------------------------------------
    def destroy(self, capsule_id: str, actor: dict[str, str] | None = None) -> None:
        row = self.m.get_row(capsule_id, "resource not found")
        if row.status in ("stopped", "stopping"):
            return  # idempotent, as on the platform
        if row.status in TRANSITIONAL:
            raise invalid_state(f"sandbox is {row.status}: wait until the transition ends")
        self._admit()
        self.change_status(capsule_id, "stopping", actor=actor)
        self._start(capsule_id, "destroy", lambda: self._destroy(capsule_id, actor))

    async def _destroy(self, capsule_id: str, actor: dict[str, str] | None) -> None:
        began = time.monotonic()
        if self._superseded(capsule_id, "stopping", "capsule.destroy", actor):
            return
        try:
            await self.m.teardown(capsule_id)
            await self.m.remove_capsule_files(capsule_id)
        except Exception as exc:
            await self._hold(began)
            # DELETE works again from `error`, so the caller can retry.
            self._settle(
                capsule_id, "error", "capsule.destroy", actor, error=f"destroy sandbox: {exc}"
            )
            return
        await self._hold(began)
        self._settle(capsule_id, "stopped", "capsule.destroy", actor)
        self.m.forget_lock(capsule_id)  # `stopped` is final: nothing waits for it again

    # snapshots --------------------------------------------------------------------
    def snapshot(
        self, body: dict[str, Any], overwrite: bool, actor: dict[str, str] | None = None
    ) -> dict[str, Any]:
        capsule_id = field(body, "sandbox_id", str, "")
        name = field(body, "name", str, "")
        if not capsule_id:
            raise bad_request("sandbox_id is required")
        self.m.check_id(capsule_id)
        name = name or f"template-{_wire.hex8()}"
        if not _wire.SAFE_NAME_RE.match(name):
            raise bad_request("invalid template name")
        existing = self.m.store.get_template(name)
        if existing is not None and existing.platform:
            raise ApiError(409, "name_reserved", f"template name {name!r} is reserved")
        if name in self._snapshot_names or (existing is not None and not overwrite):
            raise ApiError(409, "template_name_taken", f"template name {name!r} is already in use")
        row = self.m.get_row(capsule_id)
        if row.status not in ("running", "paused"):
            raise invalid_state("sandbox must be running or paused")
        self._admit()
        self._snapshot_names.add(name)
        before = row.status
        row = self.change_status(capsule_id, "snapshotting", actor=actor)
        self._start(capsule_id, "snapshot", lambda: self._snapshot(capsule_id, name, before, actor))
        return self.m.capsule_json(row)

    async def _snapshot(
        self, capsule_id: str, name: str, before: str, actor: dict[str, str] | None
    ) -> None:
        began = time.monotonic()
        try:
            row = self.m.store.get_capsule(capsule_id)
            if row is None or row.status != "snapshotting":  # reconciled while waiting
                status = row.status if row is not None else "gone"
                self._snapshot_done(name, capsule_id, actor, f"the capsule is {status}")
                return
            live = self.m.live.get(capsule_id)
            after, error, size = before, None, 0
            frozen_here = False
            try:
                # A running capsule is frozen for a consistent copy, then runs on.
                if before == "running":
                    if live is None:
                        raise OSError("the sandbox is gone")
                    await live.sandbox.freeze()
                    frozen_here = True
                size = await self.m.write_snapshot_files(capsule_id, name)
            except Exception as exc:
                error = f"snapshot: {exc}"
            finally:
                if frozen_here and live is not None:
                    try:
                        await live.sandbox.thaw()
                    except Exception as exc:
                        log.error("capsule %s: thaw after snapshot failed: %s", capsule_id, exc)
                        after = "paused"  # still frozen: a resume thaws it
            await self._hold(began)
            if error is None:
                # The template exists from here on, not before: booting from it was 404.
                self.m.store.upsert_template(
                    TemplateRow(
                        name, "snapshot", row.vcpus, row.memory_mb, size, time.time(), False
                    )
                )
            self._snapshot_done(name, capsule_id, actor, error)
            self.change_status(capsule_id, after, actor=actor)
        finally:
            self._snapshot_names.discard(name)

    def _snapshot_done(
        self, name: str, capsule_id: str, actor: dict[str, str] | None, error: str | None
    ) -> None:
        self.m.events.publish(
            "template.snapshot.create",
            name,
            "template",
            outcome="success" if error is None else "error",
            actor=actor,
            metadata={"sandbox_id": capsule_id},
            error=error,
        )


def _check_metadata(metadata: dict[str, str]) -> None:
    """API 0.2.2 create-time rules for user metadata."""
    if len(metadata) > MAX_METADATA_KEYS:
        raise bad_request(f"metadata may have at most {MAX_METADATA_KEYS} keys")
    for key, value in metadata.items():
        if not _wire.SAFE_NAME_RE.match(key):
            raise bad_request(f"invalid metadata key: {key!r}")
        if key in RESERVED_METADATA:
            raise bad_request(f"metadata key {key!r} is reserved")
        if len(value) > MAX_METADATA_VALUE:
            raise bad_request(f"metadata value for {key!r} exceeds {MAX_METADATA_VALUE} characters")


__all__ = ["LISTED", "TRANSITIONAL", "Lifecycle", "settled_after_restart"]
