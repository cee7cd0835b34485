"""How an ``AsyncCapsule`` object starts: the client it talks through (its own, or one
given as ``client=``), creating its capsule, or attaching to an existing one.

``AsyncCapsule.create``, ``AsyncCapsule.connect`` and the blocking constructor call
these; each closes a client the capsule built if it fails.
"""

from __future__ import annotations

from .._constants import CAPSULE_READY_TIMEOUT, DEFAULT_TRANSITION_TIMEOUT
from .._exceptions import WrennCapsuleStateError
from .._models_control import Capsule as CapsuleInfo
from .._models_control import Status
from .._validate import optional_int
from .client import AsyncWrennClient


def client_for(
    client: AsyncWrennClient | None, api_key: str | None, base_url: str | None
) -> tuple[AsyncWrennClient, bool]:
    """The client a capsule talks through, and whether the capsule owns it (built it)."""
    if client is None:
        return AsyncWrennClient(api_key=api_key, base_url=base_url), True
    if api_key is not None or base_url is not None:
        raise ValueError(
            "pass either client= or api_key=/base_url=, not both: "
            "a capsule given a client uses that client's key and URL"
        )
    if not isinstance(client, AsyncWrennClient):
        raise TypeError(
            f"client must be a wrenn client (AsyncWrennClient), not {type(client).__name__}"
        )
    return client, False


async def boot(
    client: AsyncWrennClient,
    owns_client: bool,
    template: str | None,
    vcpus: int | None,
    memory_mb: int | None,
    timeout: int | None,
    wait: bool,
) -> CapsuleInfo:
    """Create the capsule; on any failure close the client if the capsule built it
    (``create`` itself destroys a capsule whose wait failed)."""
    try:
        return await client.capsules.create(
            template=template,
            vcpus=vcpus,
            memory_mb=memory_mb,
            timeout_sec=optional_int(timeout, "timeout"),
            wait=wait,
            wait_timeout=DEFAULT_TRANSITION_TIMEOUT,
        )
    except BaseException:
        if owns_client:
            await client.aclose()
        raise


async def attach(client: AsyncWrennClient, capsule_id: str) -> CapsuleInfo:
    """Bring an existing capsule to ``running``, finishing whatever transition it is in."""
    capsules = client.capsules
    info = await capsules.get(capsule_id)
    status = info.status
    if status is Status.pausing:
        info = await capsules.wait(capsule_id, status=("paused", "hibernated"))
    elif status is Status.snapshotting:
        info = await capsules.wait(capsule_id, status=("running", "paused", "hibernated"))
    status = info.status
    if status in (Status.paused, Status.hibernated):
        return await capsules.resume(capsule_id)
    if status in (Status.stopped, Status.error, Status.missing, Status.stopping):
        raise WrennCapsuleStateError(
            "unexpected_state",
            f"capsule {capsule_id} is {status.value} and cannot be connected to",
            capsule_id=capsule_id,
            status=status.value,
        )
    if status is not Status.running:
        info = await capsules.wait(capsule_id, status="running", timeout=CAPSULE_READY_TIMEOUT)
    return info
