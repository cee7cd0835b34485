"""``client.snapshots``: templates made from capsules."""

from __future__ import annotations

import builtins
import datetime as _dt
import time
from typing import Literal, overload

from .._constants import (
    SNAPSHOT_READ_TIMEOUT,
    SNAPSHOT_TEMPLATE_GRACE,
    SNAPSHOT_TRANSITION_TIMEOUT,
)
from .._exceptions import WrennCapsuleStateError
from .._lifecycle import SNAPSHOT, PollDelays, new_snapshot_name
from .._models_base import json_encoder
from .._models_control import (
    Capsule,
    CreateSnapshotRequest,
    Template,
    capsule_decoder,
    template_decoder,
    template_list_decoder,
)
from .._responses import decode
from .._urls import build_path, path_param
from .._validate import optional_str, positive_seconds
from ._resource import AsyncAPIResource

_JSON = {"Content-Type": "application/json"}


class AsyncSnapshots(AsyncAPIResource):
    """Snapshot capsules into templates, list templates, delete them."""

    @overload
    async def create(
        self,
        capsule_id: str,
        name: str | None = None,
        overwrite: bool = False,
        *,
        wait: Literal[True] = True,
        wait_timeout: float = SNAPSHOT_TRANSITION_TIMEOUT,
    ) -> Template: ...

    @overload
    async def create(
        self,
        capsule_id: str,
        name: str | None = None,
        overwrite: bool = False,
        *,
        wait: bool,
        wait_timeout: float = SNAPSHOT_TRANSITION_TIMEOUT,
    ) -> Template | Capsule: ...

    async def create(
        self,
        capsule_id: str,
        name: str | None = None,
        overwrite: bool = False,
        *,
        wait: bool = True,
        wait_timeout: float = SNAPSHOT_TRANSITION_TIMEOUT,
    ) -> Template | Capsule:
        """Snapshot a running or paused capsule into a template and return the template.

        Args:
            capsule_id: the capsule to snapshot.
            name: the template name. When omitted and waiting, the SDK picks a fresh one
                (``snapshot-<hex>``) so that it can find the template it waits for.
            overwrite: ask to replace a team template of the same name instead of
                failing with 409 (API 0.2.2 servers refuse to reuse a name regardless).
            wait: wait until the snapshot is done (API 0.2.2 answers 202 at once and
                snapshots in the background) and return the new ``Template``. With
                ``wait=False`` a 0.2.2 server's answer is returned as it is: the capsule,
                in ``snapshotting``.
            wait_timeout: seconds to wait.

        A running capsule is back to ``running`` when this returns, a paused one stays
        ``paused``. A snapshot that fails raises ``WrennCapsuleStateError`` (code
        ``snapshot_failed``) with the server's reason when it sent one.
        """
        path_param(capsule_id, "capsule_id")
        name = optional_str(name, "name")
        wait_timeout = positive_seconds(wait_timeout, "wait_timeout")
        started = time.monotonic()
        if name is None and wait:
            name = new_snapshot_name()
        replaced = await self._created_at(name) if overwrite and wait and name else None
        body = CreateSnapshotRequest(sandbox_id=capsule_id, name=name)
        response = await self._request(
            "POST",
            "/v1/snapshots",
            ok=(202, 201, 200),
            params={"overwrite": "true"} if overwrite else None,
            content=json_encoder.encode(body),
            headers=_JSON,
            read_timeout=SNAPSHOT_READ_TIMEOUT,
        )
        if response.status_code != 202:
            return decode(template_decoder, response)  # a server that snapshots before answering
        capsule = decode(capsule_decoder, response)
        if not wait:
            return capsule
        assert name is not None
        waiter = self._client._transitions
        await waiter.settle(capsule_id, SNAPSHOT, capsule, wait_timeout, also=(name,))
        deadline = started + wait_timeout
        return await self._find(name, capsule_id, replaced, deadline)

    async def _find(
        self, name: str, capsule_id: str, replaced: _dt.datetime | None, deadline: float
    ) -> Template:
        """The template a finished snapshot made, listed within a short grace period."""
        waiter = self._client._transitions
        grace_end = min(deadline, time.monotonic() + SNAPSHOT_TEMPLATE_GRACE)
        delays = PollDelays()
        while True:
            for template in await self.list(type="snapshot"):
                if template.name == name and (replaced is None or template.created_at != replaced):
                    return template
            failure = waiter.failure_of(name)
            remaining = grace_end - time.monotonic()
            if failure is not None or remaining <= 0:
                reason = (
                    failure or "the capsule finished snapshotting but the template was not listed"
                )
                raise WrennCapsuleStateError(
                    "snapshot_failed",
                    f"snapshot {name!r} of capsule {capsule_id} failed: {reason}",
                    capsule_id=capsule_id,
                )
            await waiter.sleep((name,), min(delays.next(waiter.events_live), remaining))

    async def _created_at(self, name: str) -> _dt.datetime | None:
        """When the template of that name was made, if it exists (to tell a replacement apart)."""
        for template in await self.list(type="snapshot"):
            if template.name == name:
                return template.created_at or _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)
        return None

    async def list(self, type: str | None = None) -> builtins.list[Template]:
        """List the team's templates and the platform's, newest first; ``type`` is base or snapshot."""
        params = {"type": str(optional_str(type, "type"))} if type is not None else None
        response = await self._request("GET", "/v1/snapshots", params=params)
        return decode(template_list_decoder, response)

    async def delete(self, name: str) -> None:
        """Delete a team template. Platform templates cannot be deleted (403)."""
        path = build_path("/v1/snapshots/{name}", name=name)
        await self._request("DELETE", path, ok=(204, 200), missing_ok_on_retry=True)
