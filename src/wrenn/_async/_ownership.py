"""What the SDK's own labels on a capsule make possible (``_labels`` defines them).

Finding the capsule of a name for ``get_or_create``, choosing what ``reap`` destroys, and
destroying the capsule of a create whose answer never arrived. ``AsyncCapsules`` keeps
the public methods and calls these.
"""

from __future__ import annotations

import builtins
import datetime as _dt
from typing import TYPE_CHECKING

from .._compat import AsyncCleanupScope, asleep
from .._constants import ABANDON_TIMEOUT
from .._exceptions import (
    WrennAPIStatusError,
    WrennCapsuleStateError,
    WrennConflictError,
    WrennConnectionError,
    WrennError,
    WrennNotFoundError,
)
from .._labels import CREATE_TOKEN, NAME, OWNER, in_namespace, owner_id
from .._lifecycle import SETTLE
from .._logs import logger
from .._models_control import Capsule

if TYPE_CHECKING:
    from .capsules import AsyncCapsules

# Statuses of a capsule that is over (or on its way out): neither reaped nor reused.
_GONE = frozenset({"stopped", "stopping", "error", "missing"})


def may_have_created(exc: BaseException) -> bool:
    """Whether a create that raised may still have made a capsule on the server."""
    if isinstance(exc, WrennConnectionError):
        return exc.request_sent
    if isinstance(exc, WrennAPIStatusError):
        return exc.status_code is not None and exc.status_code >= 500
    return not isinstance(exc, (WrennError, ValueError, TypeError))  # cancelled, interrupted


async def named(capsules: AsyncCapsules, name: str, namespace: str | None) -> Capsule | None:
    """The oldest live capsule labelled ``name`` in ``namespace``, if any."""
    matches = [
        c
        for c in await capsules.list()
        if in_namespace(c.metadata, namespace)
        and c.metadata is not None
        and c.metadata.get(NAME) == name
        and (c.status is None or c.status.value not in _GONE)
    ]
    if not matches:
        return None
    epoch = _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)
    matches.sort(key=lambda c: c.created_at or epoch)
    if len(matches) > 1:
        logger.warning(
            "%d capsules are named %r (created concurrently elsewhere?): using %s; "
            "the others are %s",
            len(matches),
            name,
            matches[0].id,
            ", ".join(c.id for c in matches[1:]),
        )
    return matches[0]


async def bring_up(
    capsules: AsyncCapsules, capsule: Capsule, wait_timeout: float
) -> Capsule | None:
    """The capsule running (resumed, or its transition waited for); None if it failed."""
    try:
        status = capsule.status.value if capsule.status is not None else None
        if status not in ("running", "paused", "hibernated"):
            settled = await capsules._settle(capsule.id, SETTLE, capsule, wait_timeout)
            if settled is None:
                return None
            capsule = settled
            status = capsule.status.value if capsule.status is not None else None
        if status == "running":
            return capsule
        if status in ("paused", "hibernated"):
            return await capsules.resume(capsule.id, wait_timeout=wait_timeout)
    except (WrennCapsuleStateError, WrennNotFoundError, WrennConflictError) as exc:
        logger.info("capsule %s could not be brought up (%s); looking again", capsule.id, exc)
    return None


def reapable(
    listed: builtins.list[Capsule],
    namespace: str | None,
    older_than: float | None,
    include_own: bool,
) -> builtins.list[Capsule]:
    """The capsules of ``listed`` that ``reap`` destroys (its docstring says which)."""
    cutoff = (
        None
        if older_than is None
        else _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(seconds=older_than)
    )
    me = owner_id()
    doomed = []
    for capsule in listed:
        metadata = capsule.metadata
        if not in_namespace(metadata, namespace):
            continue
        assert metadata is not None
        if not include_own and metadata.get(OWNER) == me:
            continue
        if capsule.status is not None and capsule.status.value in _GONE:
            continue
        if cutoff is not None and (capsule.created_at is None or capsule.created_at > cutoff):
            continue
        doomed.append(capsule)
    return doomed


async def discard_created(capsules: AsyncCapsules, token: str) -> None:
    """Find and destroy the capsule of a create whose answer never arrived."""
    # Two looks, half a second apart (the create may still be on its way in), each
    # a single attempt: this is cleanup inside a failure, it must not linger.
    lister = capsules._client.with_options(max_retries=0).capsules
    with AsyncCleanupScope(ABANDON_TIMEOUT):
        try:
            for attempt in range(2):
                if attempt:
                    await asleep(0.5)
                mine = [
                    c
                    for c in await lister.list()
                    if c.metadata is not None and c.metadata.get(CREATE_TOKEN) == token
                ]
                for capsule in mine:
                    logger.info("destroying capsule %s of an unfinished create", capsule.id)
                    await capsules._discard(capsule.id)
                if mine:
                    return
        except WrennError as exc:
            logger.warning("could not look for the capsule of a failed create: %s", exc)
