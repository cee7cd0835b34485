"""The code runner's ``AsyncCapsule``: ``run_code`` in a persistent Jupyter kernel."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

from .._code_runner import (
    DEFAULT_KERNEL,
    DEFAULT_TEMPLATE,
    JUPYTER_PORT,
    CellCollector,
    Execution,
    ExecutionError,
    Result,
    check_language,
    execute_request,
    proxy_endpoint,
    proxy_token,
)
from .._compat import IS_ASYNC, AsyncCleanupScope, AsyncLock
from .._constants import INTERRUPT_GRACE
from .._exceptions import WrennError, WrennNotFoundError, WrennStreamError
from .._logs import logger
from .._models_base import json_encoder
from .._models_control import Capsule as CapsuleInfo
from .._validate import positive_seconds
from . import _jupyter
from . import capsule as _capsule
from ._websocket import AsyncWebSocket
from .client import AsyncWrennClient


class AsyncCapsule(_capsule.AsyncCapsule):
    """A capsule with a persistent Jupyter kernel: ``run_code`` keeps variables between calls.

    Boots the ``code-runner-beta`` template and the ``wrenn`` kernelspec unless told
    otherwise. The kernel is reached through the capsule's port proxy, which gets no
    credentials: the team API key never leaves for anything inside a capsule. A cell
    that outlives its ``timeout`` is interrupted, and ``run_code`` returns an
    ``Execution`` with ``timed_out=True``.

    ``aclose()`` closes the kernel connection and the client, as on every capsule (the
    capsule keeps running); ``close_kernel_connection()`` closes only the former. A
    client given as ``client=`` is the caller's and stays open: ``aclose()`` then closes
    only the kernel connection, and leaving the block destroys the capsule and closes
    the kernel connection.
    """

    def __init__(
        self,
        template: str | None = None,
        vcpus: int | None = None,
        memory_mb: int | None = None,
        timeout: int | None = None,
        *,
        kernel: str | None = None,
        wait: bool = True,
        api_key: str | None = None,
        base_url: str | None = None,
        client: AsyncWrennClient | None = None,
        _capsule_id: str | None = None,
        _client: AsyncWrennClient | None = None,
        _info: CapsuleInfo | None = None,
    ) -> None:
        kernel_name = _kernel_name(kernel)
        super().__init__(
            template or DEFAULT_TEMPLATE,
            vcpus,
            memory_mb,
            timeout,
            wait=wait,
            api_key=api_key,
            base_url=base_url,
            client=client,
            _capsule_id=_capsule_id,
            _client=_client,
            _info=_info,
        )
        self._kernel_name = kernel_name

    def _setup(
        self,
        capsule_id: str,
        client: AsyncWrennClient,
        info: CapsuleInfo | None,
        owns_client: bool = True,
    ) -> None:
        super()._setup(capsule_id, client, info, owns_client)
        self._kernel_name = DEFAULT_KERNEL
        self._kernel_id: str | None = None
        self._endpoint: _jupyter.Endpoint | None = None
        self._socket: AsyncWebSocket | None = None
        # One cell at a time: the kernel runs cells in order, and the replies of two
        # concurrent calls would interleave on the one connection.
        self._cell_lock = AsyncLock()

    @classmethod
    async def create(
        cls,
        template: str | None = None,
        vcpus: int | None = None,
        memory_mb: int | None = None,
        timeout: int | None = None,
        *,
        kernel: str | None = None,
        wait: bool = True,
        api_key: str | None = None,
        base_url: str | None = None,
        client: AsyncWrennClient | None = None,
    ) -> AsyncCapsule:
        """Create a code-runner capsule (template ``code-runner-beta``, kernel ``wrenn``).

        Waits until it is running (``wait=False`` returns while it starts). A capsule is
        never orphaned: if waiting fails, the capsule is destroyed (and a client the
        capsule built is closed). ``client=`` shares that client, as on every capsule.
        """
        kernel_name = _kernel_name(kernel)
        capsule = cast(
            AsyncCapsule,
            await super().create(
                template or DEFAULT_TEMPLATE,
                vcpus,
                memory_mb,
                timeout,
                wait=wait,
                api_key=api_key,
                base_url=base_url,
                client=client,
            ),
        )
        capsule._kernel_name = kernel_name
        return capsule

    @property
    def kernel_id(self) -> str | None:
        """The id of the Jupyter kernel in use, once ``run_code`` has found or started it."""
        return self._kernel_id

    async def run_code(
        self,
        code: str,
        language: str = "python",
        timeout: float = 30,
        jupyter_timeout: float = 30,
        on_result: Callable[[Result], Any] | None = None,
        on_stdout: Callable[[str], Any] | None = None,
        on_stderr: Callable[[str], Any] | None = None,
        on_error: Callable[[ExecutionError], Any] | None = None,
    ) -> Execution:
        """Run a cell in the capsule's kernel; variables and imports persist between calls.

        ``timeout`` bounds the cell: when it passes, the kernel is interrupted and the
        returned ``Execution`` has ``timed_out=True`` and an error named ``"Timeout"``,
        with the output produced so far. ``jupyter_timeout`` bounds the wait for the
        capsule's Jupyter server (``WrennTimeoutError``, also a ``TimeoutError``, after
        it). The callbacks receive each result, output chunk and error as they arrive.
        """
        check_language(language)
        timeout = positive_seconds(timeout, "timeout")
        jupyter_timeout = positive_seconds(jupyter_timeout, "jupyter_timeout")
        request = execute_request(code)
        cell = CellCollector(request["header"]["msg_id"], on_result, on_stdout, on_stderr, on_error)
        payload = json_encoder.encode(request).decode()
        async with self._cell_lock:
            jupyter_deadline = time.monotonic() + jupyter_timeout
            cell_deadline = time.monotonic() + timeout
            for attempt in range(2):
                socket = await self._kernel_socket(jupyter_deadline)
                try:
                    await socket.send_text(payload)
                except WrennStreamError:
                    # Nothing reached the kernel: one fresh connection, then the cell.
                    await self._drop_socket()
                    socket = await self._kernel_socket(jupyter_deadline)
                    await socket.send_text(payload)
                try:
                    outcome = await _jupyter.collect(socket, cell, cell_deadline)
                except WrennStreamError as exc:
                    logger.warning("the kernel connection failed mid-cell: %s", exc)
                    outcome = "disconnected"
                except BaseException:
                    # Cancelled or failed mid-cell: never leave the cell running, and let
                    # it end before the next one comes (the kernel skips cells queued
                    # behind a failed one).
                    with AsyncCleanupScope(2 * INTERRUPT_GRACE):
                        await self._stop_cell(socket, cell.msg_id)
                    raise
                if attempt or outcome != "disconnected" or cell.heard:
                    break
                # The connection died before a word of the cell came back. A kernel shut
                # down just before the cell closes its connection a moment later, so the
                # check before sending can miss it. Run the cell again only where it
                # certainly did not run: its kernel is gone. A live kernel may be running
                # it, and a cell is never run twice.
                if not await self._kernel_is_gone(jupyter_deadline):
                    break
                await self._drop_socket()
                self._kernel_id = None
            if outcome == "idle":
                cell.check_complete()
            elif outcome == "timeout":
                cell.execution.timed_out = True
                if cell.execution.error is None:
                    cell.set_error(
                        ExecutionError(
                            "Timeout",
                            f"run_code exceeded {timeout:g} s; the kernel was interrupted",
                        )
                    )
                await self._stop_cell(socket, cell.msg_id)
            elif outcome == "disconnected":
                cell.execution.timed_out = True
                if cell.execution.error is None:
                    cell.set_error(
                        ExecutionError("Disconnected", "the kernel connection closed mid-cell")
                    )
                await self._interrupt()
                await self._drop_socket()
        return cell.execution

    async def close_kernel_connection(self) -> None:
        """Close the kernel connection only: this object and its client stay usable (the
        next ``run_code`` connects again, to the same kernel)."""
        await self._release()

    if IS_ASYNC:

        async def close(self) -> None:
            """The official SDK's async spelling: the same as ``aclose()``."""
            await self.aclose()

    # --- kernel discovery and connection ----------------------------------------------

    def _jupyter_endpoint(self) -> _jupyter.Endpoint:
        """Where the capsule's Jupyter server is reached, and the only headers it gets.

        The requests go through the client's pool but never with the team's API key or
        the client's headers (``credentials=False``): what runs in the capsule must never
        see them. They carry only the capsule's proxy token, which opens this capsule's
        ports and nothing else.
        """
        if self._endpoint is None:
            self._endpoint = proxy_endpoint(
                self._client.options.base_url,
                self._client.proxy_domain,
                self._capsule_id,
                JUPYTER_PORT,
                token=proxy_token(self._client.options.api_key.reveal(), self._capsule_id),
            )
        return self._endpoint

    async def _ensure_kernel(self, deadline: float) -> str:
        """The kernel to use: the one found before, a running one of our kernelspec, or a new one."""
        if self._kernel_id is None:
            self._kernel_id = await _jupyter.find_or_start_kernel(
                self._client, self._jupyter_endpoint(), self._kernel_name, deadline
            )
        return self._kernel_id

    async def _kernel_socket(self, deadline: float) -> AsyncWebSocket:
        if self._socket is not None and await _jupyter.still_open(self._socket):
            return self._socket
        await self._drop_socket()
        for attempt in range(2):
            kernel_id = await self._ensure_kernel(deadline)
            try:
                self._socket = await _jupyter.open_channels(
                    self._client, self._jupyter_endpoint(), kernel_id, deadline
                )
                return self._socket
            except WrennNotFoundError:
                # The kernel is gone (it died, or the capsule restarted): start another.
                self._kernel_id = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _kernel_is_gone(self, deadline: float) -> bool:
        """Whether the Jupyter server says our kernel no longer exists (404)."""
        if self._kernel_id is None:
            return True
        return await _jupyter.kernel_is_gone(
            self._client, self._jupyter_endpoint(), self._kernel_id, deadline
        )

    async def _interrupt(self) -> None:
        """Interrupt the running cell (SIGINT to the kernel); failures are only logged."""
        if self._kernel_id is not None:
            await _jupyter.interrupt(self._client, self._jupyter_endpoint(), self._kernel_id)

    async def _stop_cell(self, socket: AsyncWebSocket, msg_id: str) -> None:
        """After a timeout: interrupt, then read the cell's end so the kernel is free."""
        await self._interrupt()
        drain = CellCollector(msg_id, None, None, None, None)
        try:
            outcome = await _jupyter.collect(socket, drain, time.monotonic() + INTERRUPT_GRACE)
        except WrennError:
            outcome = "disconnected"
        if outcome != "idle":
            logger.warning(
                "kernel %s did not stop within %g s of an interrupt; the next cell waits for it",
                self._kernel_id,
                INTERRUPT_GRACE,
            )
            await self._drop_socket()

    async def _drop_socket(self) -> None:
        socket, self._socket = self._socket, None
        if socket is not None:
            try:
                await socket.aclose()
            except WrennError as exc:
                logger.debug("closing the kernel connection failed: %s", exc)

    async def _release(self) -> None:
        # The Jupyter calls use the client's pool: the kernel connection is all there
        # is to close of the capsule's own.
        await self._drop_socket()


def _kernel_name(kernel: str | None) -> str:
    if kernel is None:
        return DEFAULT_KERNEL
    if not isinstance(kernel, str) or not kernel.strip():
        raise ValueError("kernel must be a non-empty kernelspec name")
    return kernel
