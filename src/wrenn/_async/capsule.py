"""``AsyncCapsule``: one capsule with its commands, files and terminals."""

from __future__ import annotations

import builtins
from types import TracebackType
from typing import Any

from .._compat import IS_ASYNC
from .._constants import (
    CAPSULE_READY_TIMEOUT,
    DEFAULT_TRANSITION_TIMEOUT,
    SNAPSHOT_TRANSITION_TIMEOUT,
)
from .._dual import dual_method
from .._models_control import Capsule as CapsuleInfo
from .._models_control import Status, Template
from .._urls import proxy_url
from .._validate import optional_int, positive_seconds, string_list, string_map
from ._capsule_start import attach, boot, client_for
from .client import AsyncWrennClient
from .commands import AsyncCommands
from .files import AsyncFiles
from .git import AsyncGit
from .lease import AsyncLease
from .pty import AsyncPtySession


class AsyncCapsule:
    """A capsule and its data plane: ``commands``, ``files``, ``git`` and terminals (``pty``).

    Create one with ``await AsyncCapsule.create(...)`` (the blocking ``Capsule(...)``
    also creates directly), attach to an existing one with
    ``await AsyncCapsule.connect(capsule_id)``. As a context manager it destroys the
    capsule on exit and closes this object's connections; a failed destroy is logged
    to the ``wrenn`` logger, never raised over your exception. ``aclose()`` closes this
    object's connections and leaves the capsule running.

    This object's connections are a code runner's kernel connection and the client
    the capsule built for itself (from ``api_key`` and ``base_url``). Pass ``client=``
    to ``create`` or ``connect`` (or the blocking constructor) instead, and capsules
    share that client's connection pool and its one event-stream subscription for
    lifecycle waits. The caller owns a client given so: no capsule closes it (not
    leaving the block, not ``aclose()``, not a failed create or connect), and it must
    stay open while its capsules are used.
    """

    def __init__(
        self,
        template: str | None = None,
        vcpus: int | None = None,
        memory_mb: int | None = None,
        timeout: int | None = None,
        *,
        wait: bool = True,
        api_key: str | None = None,
        base_url: str | None = None,
        client: AsyncWrennClient | None = None,
        _capsule_id: str | None = None,
        _client: AsyncWrennClient | None = None,
        _info: CapsuleInfo | None = None,
    ) -> None:
        if _capsule_id is None or _client is None:
            if IS_ASYNC:
                raise TypeError(
                    "cannot create a capsule without awaiting: use `await AsyncCapsule.create(...)`"
                )
            else:
                # The blocking twin creates right here, as the official Capsule(...) does.
                given, owned = client_for(client, api_key, base_url)
                _info = boot(given, owned, template, vcpus, memory_mb, timeout, wait)
                self._setup(_info.id, given, _info, owns_client=owned)
                return
        # The private form (as in the official SDK) hands over a client the capsule owns.
        self._setup(_capsule_id, _client, _info)

    def _setup(
        self,
        capsule_id: str,
        client: AsyncWrennClient,
        info: CapsuleInfo | None,
        owns_client: bool = True,
    ) -> None:
        self._capsule_id = capsule_id
        self._client = client
        self._owns_client = owns_client
        self._info = info
        self.commands = AsyncCommands(client, capsule_id)
        self.files = AsyncFiles(client, capsule_id)
        self.git = AsyncGit(self.commands)

    @classmethod
    async def create(
        cls,
        template: str | None = None,
        vcpus: int | None = None,
        memory_mb: int | None = None,
        timeout: int | None = None,
        *,
        wait: bool = True,
        api_key: str | None = None,
        base_url: str | None = None,
        client: AsyncWrennClient | None = None,
    ) -> AsyncCapsule:
        """Create a capsule (``timeout`` is its inactivity auto-pause in seconds) and return it.

        Waits until it is running (``wait=False`` returns while it is still starting:
        commands answer 409 until it runs; ``wait_ready()`` waits for that later). A
        capsule is never orphaned: if waiting fails, the capsule is destroyed (and a
        client the capsule built is closed).

        ``client=`` talks through that client (its pool, its event subscription) instead
        of building one; the caller keeps owning it, and ``api_key``/``base_url`` must
        then be left out (they are the client's).
        """
        given, owned = client_for(client, api_key, base_url)
        capsule = cls.__new__(cls)
        info = await boot(given, owned, template, vcpus, memory_mb, timeout, wait)
        capsule._setup(info.id, given, info, owns_client=owned)
        return capsule

    @classmethod
    async def connect(
        cls,
        capsule_id: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        client: AsyncWrennClient | None = None,
    ) -> AsyncCapsule:
        """Attach to an existing capsule, resuming it if it is paused, and wait until it runs.

        A capsule in the middle of a transition is waited for first (a pause finishes,
        then the capsule is resumed; a snapshot finishes). One that is stopped, stopping
        or failed raises ``WrennCapsuleStateError``. ``client=`` is as for ``create``.
        """
        given, owned = client_for(client, api_key, base_url)
        try:
            info = await attach(given, capsule_id)
        except BaseException:
            if owned:
                await given.aclose()
            raise
        capsule = cls.__new__(cls)
        capsule._setup(info.id, given, info, owns_client=owned)
        return capsule

    @classmethod
    async def list(
        cls, *, api_key: str | None = None, base_url: str | None = None
    ) -> builtins.list[CapsuleInfo]:
        """List the team's capsules."""
        async with AsyncWrennClient(api_key=api_key, base_url=base_url) as client:
            return await client.capsules.list()

    # --- properties -----------------------------------------------------------------

    @property
    def capsule_id(self) -> str:
        return self._capsule_id

    @property
    def info(self) -> CapsuleInfo | None:
        """The capsule as last seen by this object (``get_info()`` refreshes it)."""
        return self._info

    @property
    def client(self) -> AsyncWrennClient:
        """The low-level client this capsule talks through: the one given as ``client=``,
        or the capsule's own."""
        return self._client

    def __repr__(self) -> str:
        status = (
            self._info.status.value
            if self._info is not None and self._info.status is not None
            else "?"
        )
        return f"<{type(self).__name__} {self._capsule_id} status={status}>"

    # --- lifecycle (instance or class with an id) ---------------------------------------

    @dual_method
    async def destroy(
        self, wait: bool = True, wait_timeout: float = DEFAULT_TRANSITION_TIMEOUT
    ) -> None:
        """Destroy the capsule; by default wait until it is stopped."""
        await self._client.capsules.destroy(self._capsule_id, wait=wait, wait_timeout=wait_timeout)

    @destroy.classmethod
    async def _destroy_by_id(
        cls,
        capsule_id: str,
        *,
        wait: bool = True,
        wait_timeout: float = DEFAULT_TRANSITION_TIMEOUT,
        api_key: str | None = None,
        base_url: str | None = None,
    ) -> None:
        async with AsyncWrennClient(api_key=api_key, base_url=base_url) as client:
            await client.capsules.destroy(capsule_id, wait=wait, wait_timeout=wait_timeout)

    @dual_method
    async def pause(
        self, wait: bool = True, wait_timeout: float = DEFAULT_TRANSITION_TIMEOUT
    ) -> CapsuleInfo:
        """Pause the capsule; by default wait until it is paused, and return it."""
        self._info = await self._client.capsules.pause(
            self._capsule_id, wait=wait, wait_timeout=wait_timeout
        )
        return self._info

    @pause.classmethod
    async def _pause_by_id(
        cls,
        capsule_id: str,
        *,
        wait: bool = True,
        wait_timeout: float = DEFAULT_TRANSITION_TIMEOUT,
        api_key: str | None = None,
        base_url: str | None = None,
    ) -> CapsuleInfo:
        async with AsyncWrennClient(api_key=api_key, base_url=base_url) as client:
            return await client.capsules.pause(capsule_id, wait=wait, wait_timeout=wait_timeout)

    @dual_method
    async def resume(
        self, wait: bool = True, wait_timeout: float = DEFAULT_TRANSITION_TIMEOUT
    ) -> CapsuleInfo:
        """Resume the capsule; by default wait until it is running, and return it."""
        self._info = await self._client.capsules.resume(
            self._capsule_id, wait=wait, wait_timeout=wait_timeout
        )
        return self._info

    @resume.classmethod
    async def _resume_by_id(
        cls,
        capsule_id: str,
        *,
        wait: bool = True,
        wait_timeout: float = DEFAULT_TRANSITION_TIMEOUT,
        api_key: str | None = None,
        base_url: str | None = None,
    ) -> CapsuleInfo:
        async with AsyncWrennClient(api_key=api_key, base_url=base_url) as client:
            return await client.capsules.resume(capsule_id, wait=wait, wait_timeout=wait_timeout)

    @dual_method
    async def get_info(self) -> CapsuleInfo:
        """Fetch the capsule's current state."""
        self._info = await self._client.capsules.get(self._capsule_id)
        return self._info

    @get_info.classmethod
    async def _get_info_by_id(
        cls, capsule_id: str, *, api_key: str | None = None, base_url: str | None = None
    ) -> CapsuleInfo:
        async with AsyncWrennClient(api_key=api_key, base_url=base_url) as client:
            return await client.capsules.get(capsule_id)

    async def ping(self) -> None:
        """Reset the inactivity timer."""
        await self._client.capsules.ping(self._capsule_id)

    def lease(self, every: float | None = None) -> AsyncLease:
        """Keep the capsule from auto-pausing while a block runs: it is pinged every
        ``every`` seconds (by default a third of its ``timeout_sec``)."""
        return self._client.capsules.lease(self._capsule_id, every=every)

    async def wait_ready(
        self, timeout: float = CAPSULE_READY_TIMEOUT, interval: float = 0.5
    ) -> None:
        """Wait until the capsule runs; ``TimeoutError`` after ``timeout`` seconds, ``RuntimeError`` if it failed."""
        self._info = await self._client.capsules.wait(
            self._capsule_id,
            status="running",
            timeout=positive_seconds(timeout, "timeout"),
            interval=interval,
        )

    async def is_running(self) -> bool:
        """Whether the capsule is running right now (asks the server)."""
        return (await self.get_info()).status is Status.running

    def get_url(self, port: int) -> str:
        """The URL of a port inside the capsule, through the platform's proxy."""
        return proxy_url(
            self._client.options.base_url, self._client.proxy_domain, self._capsule_id, port
        )

    async def create_snapshot(
        self,
        name: str | None = None,
        overwrite: bool = False,
        *,
        wait_timeout: float = SNAPSHOT_TRANSITION_TIMEOUT,
    ) -> Template:
        """Snapshot the capsule into a template that new capsules can boot from.

        Waits until the snapshot is done and returns the template; the capsule is then
        back in the status it had (running, or paused). See ``client.snapshots.create``
        for ``wait=False``.
        """
        return await self._client.snapshots.create(
            self._capsule_id, name=name, overwrite=overwrite, wait_timeout=wait_timeout
        )

    # --- terminals ----------------------------------------------------------------------

    def pty(
        self,
        cmd: str = "/bin/bash",
        args: builtins.list[str] | None = None,
        cols: int = 80,
        rows: int = 24,
        envs: dict[str, str] | None = None,
        cwd: str | None = None,
        *,
        keepalive: bool = False,
    ) -> AsyncPtySession:
        """Start a terminal; use it as a context manager, which kills it on exit.

        ``keepalive=True`` holds a lease on the capsule for the block."""
        first: dict[str, Any] = {"type": "start", "cmd": cmd, "cols": cols, "rows": rows}
        if args is not None:
            first["args"] = string_list(args, "args")
        if envs is not None:
            first["envs"] = string_map(envs, "envs")
        if cwd is not None:
            first["cwd"] = cwd
        for name, value in (("cols", cols), ("rows", rows)):
            if optional_int(value, name, minimum=1) is None:
                raise ValueError(f"{name} is required")
        return AsyncPtySession(
            self._client, self._capsule_id, first, kill_on_exit=True, keepalive=keepalive
        )

    def pty_connect(self, tag: str, *, keepalive: bool = False) -> AsyncPtySession:
        """Re-attach to a running terminal by its tag (it keeps running when you leave)."""
        if not isinstance(tag, str) or not tag:
            raise ValueError("tag must be a non-empty string")
        return AsyncPtySession(
            self._client,
            self._capsule_id,
            {"type": "connect", "tag": tag},
            kill_on_exit=False,
            keepalive=keepalive,
        )

    # --- context manager ----------------------------------------------------------------

    async def aclose(self) -> None:
        """Close this object's connections: the client it built (never one given as
        ``client=``, which its owner closes) and, on a code runner, the kernel
        connection. The capsule keeps running; ``connect`` attaches to it again."""
        try:
            await self._release()
        finally:
            await self._close_own_client()

    async def _release(self) -> None:
        """Let go of connections held besides the client (none here; subclasses add theirs)."""

    async def _close_own_client(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> AsyncCapsule:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            try:
                await self._release()
            finally:
                await _destroy_quietly(self._client, self._capsule_id)
        finally:
            await self._close_own_client()


async def _destroy_quietly(client: AsyncWrennClient, capsule_id: str) -> None:
    """Destroy on leaving the block, until stopped (bounded): a failure is logged, never
    raised over the original error; a capsule in the middle of a transition is
    destroyed once it has settled."""
    await client.capsules._discard(capsule_id, until_stopped=True)
