"""``client.snapshots``: templates made from capsules."""

from __future__ import annotations

import builtins

from .._constants import SNAPSHOT_READ_TIMEOUT
from .._models import (
    CreateSnapshotRequest,
    Template,
    json_encoder,
    template_decoder,
    template_list_decoder,
)
from .._responses import decode
from .._urls import build_path, path_param
from .._validate import optional_str
from ._resource import AsyncAPIResource

_JSON = {"Content-Type": "application/json"}


class AsyncSnapshots(AsyncAPIResource):
    """Snapshot capsules into templates, list templates, delete them."""

    async def create(
        self, capsule_id: str, name: str | None = None, overwrite: bool = False
    ) -> Template:
        """Snapshot a running or paused capsule into a template and return it.

        Args:
            capsule_id: the capsule to snapshot.
            name: the template name (the server generates one if omitted).
            overwrite: replace a team template of the same name instead of failing with 409.
        """
        path_param(capsule_id, "capsule_id")
        body = CreateSnapshotRequest(sandbox_id=capsule_id, name=optional_str(name, "name"))
        response = await self._requester.request(
            self._client._options,
            "POST",
            "/v1/snapshots",
            ok=(201, 200),
            params={"overwrite": "true"} if overwrite else None,
            content=json_encoder.encode(body),
            headers=_JSON,
            read_timeout=SNAPSHOT_READ_TIMEOUT,
        )
        return decode(template_decoder, response)

    async def list(self, type: str | None = None) -> builtins.list[Template]:
        """List the team's templates and the platform's, newest first; ``type`` is base or snapshot."""
        params = {"type": str(optional_str(type, "type"))} if type is not None else None
        response = await self._requester.request(
            self._client._options, "GET", "/v1/snapshots", params=params
        )
        return decode(template_list_decoder, response)

    async def delete(self, name: str) -> None:
        """Delete a team template. Platform templates cannot be deleted (403)."""
        path = build_path("/v1/snapshots/{name}", name=name)
        await self._requester.request(
            self._client._options, "DELETE", path, ok=(204, 200), missing_ok_on_retry=True
        )
