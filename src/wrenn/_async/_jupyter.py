"""The capsule's Jupyter server, as the code runner's ``AsyncCapsule`` talks to it.

REST calls through the capsule's port proxy (find or start a kernel, ask whether one is
gone, interrupt it), opening a kernel's WebSocket, and reading a cell's messages off
it. Every call goes to the ``endpoint`` the capsule computed (its proxy URL and the only
headers it gets: never the team's API key). The capsule keeps the state (its kernel and
connection) and decides what ``run_code`` does; nothing here holds any.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import msgspec

from .._code_runner import CellCollector, pick_kernel
from .._compat import asleep
from .._constants import (
    INTERRUPT_GRACE,
    JUPYTER_MAX_BODY,
    JUPYTER_MIN_CALL_TIME,
    KERNEL_POLL_INTERVAL,
    KERNEL_SOCKET_PEEK,
    REPLY_GRACE,
)
from .._exceptions import (
    WrennAPIStatusError,
    WrennConnectionError,
    WrennError,
    WrennNotFoundError,
    WrennResponseValidationError,
    WrennStreamError,
    WrennTimeoutError,
)
from .._logs import logger
from .._models_base import json_encoder
from .._urls import path_param
from ._websocket import AsyncWebSocket, DeadlineReached
from .client import AsyncWrennClient

# The Jupyter server's base URL through the port proxy, and the headers it gets.
Endpoint = tuple[str, dict[str, str]]

# The port proxy answers these while the capsule's Jupyter server is still starting.
_NOT_READY_STATUSES = (502, 503, 504)
# ... and these transport failures (nothing listens yet, or the server dropped us).
_NOT_LISTENING = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError)
_JUPYTER_OK = tuple(range(200, 300))


class _NotReady(Exception):
    """Jupyter did not answer yet (connection refused, 502-504): ask again shortly."""


async def request(
    client: AsyncWrennClient,
    endpoint: Endpoint,
    method: str,
    path: str,
    deadline: float,
    body: dict[str, Any] | None = None,
) -> Any:
    """One Jupyter REST call through the port proxy, decoded.

    Sent once (no retries, no draw on the client's retry budget): a server that is
    still starting raises ``_NotReady``, and ``find_or_start_kernel`` asks again until
    its deadline. The body is bounded in size and read by ``deadline``.
    """
    base, headers = endpoint
    content = None
    if body is not None:
        content = json_encoder.encode(body)
        headers = {**headers, "Content-Type": "application/json"}
    # A poll that wakes right at the deadline still gets its one answer.
    deadline = max(deadline, time.monotonic() + JUPYTER_MIN_CALL_TIME)
    try:
        response = await client._api._port_request(
            method,
            base,
            path,
            deadline=deadline,
            headers=headers,
            ok=_JUPYTER_OK,
            content=content,
            max_response_bytes=JUPYTER_MAX_BODY,
        )
    except WrennAPIStatusError as exc:
        if exc.status_code in _NOT_READY_STATUSES:
            raise _NotReady(f"HTTP {exc.status_code}") from None
        raise
    except WrennConnectionError as exc:
        cause = exc.__cause__
        if isinstance(cause, _NOT_LISTENING):
            raise _NotReady(f"{type(cause).__name__}: {cause}") from None
        raise
    if not response.content:
        return None
    try:
        return msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        raise WrennResponseValidationError(
            "invalid_response", f"{method} {path}: the Jupyter server answered non-JSON"
        ) from None


async def find_or_start_kernel(
    client: AsyncWrennClient, endpoint: Endpoint, kernel_name: str, deadline: float
) -> str:
    """A running kernel with the kernelspec name ``kernel_name``, or a new one.

    Asks again while the Jupyter server is still starting, until ``deadline``.
    """
    last = "no answer yet"
    for _ in range(100_000):  # bounded by count as well as by the deadline
        try:
            kernel_id = pick_kernel(
                await request(client, endpoint, "GET", "/api/kernels", deadline), kernel_name
            )
            if kernel_id is None:
                started = await request(
                    client, endpoint, "POST", "/api/kernels", deadline, {"name": kernel_name}
                )
                kernel_id = started.get("id") if isinstance(started, dict) else None
                if not isinstance(kernel_id, str) or not kernel_id:
                    raise WrennResponseValidationError(
                        "invalid_response", "the Jupyter server started a kernel without an id"
                    )
            return kernel_id
        except _NotReady as exc:
            last = str(exc)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        await asleep(min(KERNEL_POLL_INTERVAL, remaining))
    raise WrennTimeoutError(
        f"the capsule's Jupyter server was not available in time ({last})",
        request_sent=False,
    )


async def open_channels(
    client: AsyncWrennClient, endpoint: Endpoint, kernel_id: str, deadline: float
) -> AsyncWebSocket:
    """The kernel's WebSocket (``WrennNotFoundError`` when the kernel is gone)."""
    path = f"/api/kernels/{path_param(kernel_id, 'kernel_id')}/channels"
    base, headers = endpoint
    return await client._api._port_ws(
        base,
        path,
        deadline=max(deadline, time.monotonic() + JUPYTER_MIN_CALL_TIME),
        headers=headers,
    )


async def kernel_is_gone(
    client: AsyncWrennClient, endpoint: Endpoint, kernel_id: str, deadline: float
) -> bool:
    """Whether the Jupyter server says the kernel no longer exists (404)."""
    path = f"/api/kernels/{path_param(kernel_id, 'kernel_id')}"
    try:
        await request(
            client, endpoint, "GET", path, max(deadline, time.monotonic() + INTERRUPT_GRACE)
        )
    except WrennNotFoundError:
        return True
    except (WrennError, _NotReady) as exc:
        logger.warning("could not look up kernel %s: %s", kernel_id, exc)
    return False


async def interrupt(client: AsyncWrennClient, endpoint: Endpoint, kernel_id: str) -> None:
    """Interrupt the running cell (SIGINT to the kernel); failures are only logged."""
    path = f"/api/kernels/{path_param(kernel_id, 'kernel_id')}/interrupt"
    try:
        await request(client, endpoint, "POST", path, time.monotonic() + INTERRUPT_GRACE)
    except (WrennError, _NotReady) as exc:
        logger.warning("could not interrupt kernel %s: %s", kernel_id, exc)


async def still_open(socket: AsyncWebSocket) -> bool:
    """Whether a kept connection still works, found without waiting.

    Reads what arrived since the last cell (late output of an interrupted one, which no
    cell wants) and notices a server that closed meanwhile (the kernel was shut down),
    so the next cell goes to a live kernel instead of into a dead connection.
    """
    for _ in range(10_000):  # bounded: a busy kernel cannot keep us here
        if socket.ended:
            return False
        try:
            if await socket.receive(time.monotonic() + KERNEL_SOCKET_PEEK) is None:
                return False
        except DeadlineReached:
            return True
        except WrennStreamError:
            return False
    return True


async def collect(socket: AsyncWebSocket, cell: CellCollector, deadline: float) -> str:
    """Feed the cell's messages to ``cell``: "idle", "timeout" or "disconnected".

    Once the kernel is idle, its answer on the other channel gets ``REPLY_GRACE``
    seconds to arrive; the cell counts as finished either way.
    """
    while True:
        try:
            raw = await socket.receive(deadline)
        except DeadlineReached:
            return "idle" if cell.idle else "timeout"
        if raw is None:
            return "disconnected"
        try:
            message = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            logger.debug("ignored a kernel message that is not JSON")
            continue
        if cell.apply(message):
            return "idle"
        if cell.idle:
            deadline = min(deadline, time.monotonic() + REPLY_GRACE)
