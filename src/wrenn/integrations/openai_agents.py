"""A sandbox client for the OpenAI Agents SDK (``agents.sandbox``) backed by Wrenn capsules.

Install ``wrenn[openai-agents]``, then give a ``SandboxAgent`` a Wrenn capsule at run time::

    from agents import Runner
    from agents.run_config import RunConfig, SandboxRunConfig
    from wrenn.integrations.openai_agents import WrennSandboxClient, WrennSandboxClientOptions

    run_config = RunConfig(
        sandbox=SandboxRunConfig(
            client=WrennSandboxClient(), options=WrennSandboxClientOptions(template="python")
        )
    )
    result = await Runner.run(agent, "...", run_config=run_config)

It has the shape of the SDK's built-in E2B client: ``create`` makes a capsule, commands run
in it with the manifest's environment and working directory, files go through the capsule's
file API, the workspace persists as a tar archive, and on exit the capsule is destroyed, or
paused (``pause_on_exit=True``) so that ``resume`` reattaches to it later, resuming it. When
the capsule is gone, ``resume`` creates a new one and the SDK hydrates it from the session's
snapshot. The key and URL come from ``WRENN_API_KEY`` / ``WRENN_BASE_URL`` unless given.
"""

from __future__ import annotations

import io
import logging
import shlex
import uuid
from pathlib import Path
from typing import Any, Literal

from agents.sandbox.errors import (  # type: ignore[import-not-found, unused-ignore]
    ExecTimeoutError,
    ExecTransportError,
    WorkspaceArchiveReadError,
    WorkspaceArchiveWriteError,
    WorkspaceReadNotFoundError,
    WorkspaceStartError,
    WorkspaceWriteTypeError,
)
from agents.sandbox.manifest import Manifest  # type: ignore[import-not-found, unused-ignore]
from agents.sandbox.session import (  # type: ignore[import-not-found, unused-ignore]
    SandboxSession,
    SandboxSessionState,
)
from agents.sandbox.session.base_sandbox_session import (  # type: ignore[import-not-found, unused-ignore]
    BaseSandboxSession,
)
from agents.sandbox.session.manager import (  # type: ignore[import-not-found, unused-ignore]
    Instrumentation,
)
from agents.sandbox.session.runtime_helpers import (  # type: ignore[import-not-found, unused-ignore]
    RESOLVE_WORKSPACE_PATH_HELPER,
    RuntimeHelperScript,
)
from agents.sandbox.session.sandbox_client import (  # type: ignore[import-not-found, unused-ignore]
    BaseSandboxClient,
    BaseSandboxClientOptions,
)
from agents.sandbox.session.tar_workspace import (  # type: ignore[import-not-found, unused-ignore]
    shell_tar_exclude_args,
)
from agents.sandbox.snapshot import (  # type: ignore[import-not-found, unused-ignore]
    SnapshotBase,
    SnapshotSpec,
    resolve_snapshot,
)
from agents.sandbox.types import ExecResult, User  # type: ignore[import-not-found, unused-ignore]
from agents.sandbox.util.tar_utils import (  # type: ignore[import-not-found, unused-ignore]
    UnsafeTarMemberError,
    validate_tar_bytes,
)
from pydantic import Field, SecretStr  # type: ignore[import-not-found, unused-ignore]

from .._async.capsule import AsyncCapsule
from .._async.client import AsyncWrennClient
from .._constants import AGENTS_TAR_TIMEOUT, AGENTS_UNBOUNDED_EXEC_TIMEOUT
from .._exceptions import (
    WrennAgentError,
    WrennCommandTimeoutError,
    WrennError,
    WrennNotFoundError,
)
from .._models_control import Status

__all__ = [
    "WrennSandboxClient",
    "WrennSandboxClientOptions",
    "WrennSandboxSession",
    "WrennSandboxSessionState",
]

logger = logging.getLogger("wrenn.openai_agents")

NAMESPACE = "openai-agents"


class WrennSandboxClientOptions(BaseSandboxClientOptions):  # type: ignore[misc, unused-ignore]
    """How a session's capsule is made, and what happens to it on exit.

    ``template`` (a template or snapshot name), ``vcpus``, ``memory_mb`` and ``timeout``
    (inactivity auto-pause, seconds) as for ``AsyncCapsule.create``; ``envs`` apply to every
    command (the manifest's environment wins); ``pause_on_exit`` pauses the capsule instead
    of destroying it, so the session can be resumed. ``api_key`` / ``base_url`` default to
    ``WRENN_API_KEY`` / ``WRENN_BASE_URL``; the key is never serialized.
    """

    type: Literal["wrenn"] = "wrenn"
    template: str | None = None
    vcpus: int | None = Field(default=None, ge=1)
    memory_mb: int | None = Field(default=None, ge=1)
    timeout: int | None = Field(default=None, ge=0)
    envs: dict[str, str] | None = None
    pause_on_exit: bool = False
    base_url: str | None = None
    api_key: SecretStr | None = Field(default=None, exclude=True, repr=False)


class WrennSandboxSessionState(SandboxSessionState):  # type: ignore[misc, unused-ignore]
    """What ``resume`` needs: the capsule and how to make a new one (never the key)."""

    type: Literal["wrenn"] = "wrenn"
    capsule_id: str
    template: str | None = None
    vcpus: int | None = None
    memory_mb: int | None = None
    capsule_timeout: int | None = None
    base_envs: dict[str, str] = Field(default_factory=dict)
    pause_on_exit: bool = False
    base_url: str | None = None


class WrennSandboxSession(BaseSandboxSession):  # type: ignore[misc, unused-ignore]
    """One capsule as an Agents SDK sandbox session; ``capsule`` is the ``AsyncCapsule``."""

    state: WrennSandboxSessionState

    def __init__(self, *, state: WrennSandboxSessionState, capsule: AsyncCapsule) -> None:
        self.state = state
        self._capsule = capsule
        self._workspace_root_ready: bool = state.workspace_root_ready

    @property
    def capsule(self) -> AsyncCapsule:
        return self._capsule

    @property
    def capsule_id(self) -> str:
        return self._capsule.capsule_id

    # --- provider hooks ----------------------------------------------------------------

    async def _validate_path_access(self, path: Path | str, *, for_write: bool = False) -> Path:
        validated: Path = await self._validate_remote_path_access(path, for_write=for_write)
        return validated

    def _runtime_helpers(self) -> tuple[RuntimeHelperScript, ...]:
        return (RESOLVE_WORKSPACE_PATH_HELPER,)

    def _current_runtime_helper_cache_key(self) -> object | None:
        return self.state.capsule_id

    async def _resolved_envs(self) -> dict[str, str]:
        manifest_envs: dict[str, str] = await self.state.manifest.environment.resolve()
        return {**self.state.base_envs, **manifest_envs}

    async def _prepare_backend_workspace(self) -> None:
        root = self._workspace_root_path()
        try:
            result = await self._capsule.commands.run(
                ["mkdir", "-p", "--", root.as_posix()], envs=await self._resolved_envs(), cwd="/"
            )
        except WrennError as exc:
            raise WorkspaceStartError(path=root, cause=exc) from exc
        if result.exit_code != 0:
            raise WorkspaceStartError(
                path=root,
                context={"reason": "workspace_root_nonzero_exit", "exit_code": result.exit_code},
            )
        self._workspace_root_ready = True

    async def _after_start(self) -> None:
        # hydrate_workspace never replaces the capsule, but a resumed session may have a new one.
        if self._runtime_helper_cache_key != self._current_runtime_helper_cache_key():
            await self._ensure_runtime_helpers()

    async def _shutdown_backend(self) -> None:
        """Pause the capsule (``pause_on_exit``) or destroy it; then close its client.

        A failed pause falls back to destroying, so nothing is left running unasked.
        """
        try:
            if self.state.pause_on_exit:
                try:
                    await self._capsule.pause()
                    return
                except WrennError as exc:
                    logger.warning(
                        "could not pause capsule %s on exit (%s); destroying it",
                        self.capsule_id,
                        type(exc).__name__,
                    )
            try:
                await self._capsule.destroy()
            except WrennNotFoundError:
                pass
            except WrennError as exc:
                logger.warning("could not destroy capsule %s: %s", self.capsule_id, exc)
        finally:
            await self._capsule.aclose()

    # --- commands ----------------------------------------------------------------------

    async def _exec_internal(
        self, *command: str | Path, timeout: float | None = None
    ) -> ExecResult:
        argv = [str(part) for part in command]
        limit = AGENTS_UNBOUNDED_EXEC_TIMEOUT if timeout is None else max(float(timeout), 0.001)
        cwd = self.state.manifest.root if self._workspace_root_ready else None
        try:
            result = await self._capsule.commands.run(
                argv, timeout=limit, envs=await self._resolved_envs() or None, cwd=cwd
            )
        except WrennCommandTimeoutError as exc:
            raise ExecTimeoutError(command=command, timeout_s=timeout, cause=exc) from exc
        except WrennError as exc:
            raise ExecTransportError(command=command, cause=exc) from exc
        return ExecResult(
            stdout=result.stdout.encode("utf-8", errors="replace"),
            stderr=result.stderr.encode("utf-8", errors="replace"),
            exit_code=result.exit_code,
        )

    # --- files ---------------------------------------------------------------------------

    async def read(self, path: Path, *, user: str | User | None = None) -> io.IOBase:
        if user is not None:
            await self._check_read_with_exec(path, user=user)
        workspace_path = await self._validate_path_access(path)
        try:
            data = await self._capsule.files.read_bytes(workspace_path.as_posix())
        except WrennError as exc:
            if _is_missing(exc):
                raise WorkspaceReadNotFoundError(path=path, cause=exc) from exc
            raise WorkspaceArchiveReadError(path=path, cause=exc) from exc
        return io.BytesIO(data)

    async def _read_bounded(self, path: Path, *, max_bytes: int) -> bytes:
        workspace_path = await self._validate_path_access(path)
        result = bytearray()
        try:
            async with self._capsule.files.download_stream(workspace_path.as_posix()) as chunks:
                async for chunk in chunks:
                    result.extend(chunk[: max_bytes - len(result)])
                    if len(result) >= max_bytes:
                        break
        except WrennError as exc:
            if _is_missing(exc):
                raise WorkspaceReadNotFoundError(path=path) from None
            raise WorkspaceArchiveReadError(path=path) from None
        return bytes(result)

    async def write(self, path: Path, data: io.IOBase, *, user: str | User | None = None) -> None:
        if user is not None:
            await self._check_write_with_exec(path, user=user)
        payload = data.read()
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        if not isinstance(payload, (bytes, bytearray)):
            raise WorkspaceWriteTypeError(path=path, actual_type=type(payload).__name__)
        workspace_path = await self._validate_path_access(path, for_write=True)
        try:
            await self._capsule.files.write(workspace_path.as_posix(), bytes(payload))
        except WrennError as exc:
            raise WorkspaceArchiveWriteError(path=workspace_path, cause=exc) from exc

    async def running(self) -> bool:
        if not self._workspace_root_ready:
            return False
        try:
            return await self._capsule.is_running()
        except WrennError:
            return False

    # --- workspace persistence -----------------------------------------------------------

    async def persist_workspace(self) -> io.IOBase:
        """The workspace as a tar stream with workspace-relative members."""
        root = self._workspace_root_path()
        archive = f"/tmp/.wrenn-workspace-{uuid.uuid4().hex}.tar"
        excludes = " ".join(shell_tar_exclude_args(self._persist_workspace_skip_relpaths()))
        script = f"tar {excludes} -C {shlex.quote(root.as_posix())} -cf {shlex.quote(archive)} ."
        try:
            result = await self._capsule.commands.run(
                ["/bin/sh", "-c", script], timeout=AGENTS_TAR_TIMEOUT, cwd="/"
            )
            if result.exit_code != 0:
                raise WorkspaceArchiveReadError(
                    path=root,
                    context={"reason": "snapshot_nonzero_exit", "exit_code": result.exit_code},
                )
            return io.BytesIO(await self._capsule.files.read_bytes(archive))
        except WrennError as exc:
            raise WorkspaceArchiveReadError(path=root, cause=exc) from exc
        finally:
            await self._remove_quietly(archive)

    async def hydrate_workspace(self, data: io.IOBase) -> None:
        """Unpack a tar stream from ``persist_workspace`` into the workspace (checked first)."""
        root = self._workspace_root_path()
        raw = data.read()
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        if not isinstance(raw, (bytes, bytearray)):
            raise WorkspaceWriteTypeError(path=root, actual_type=type(raw).__name__)
        try:
            validate_tar_bytes(bytes(raw), allow_external_symlink_targets=False)
        except UnsafeTarMemberError as exc:
            raise WorkspaceArchiveWriteError(
                path=root,
                context={"reason": "unsafe_or_invalid_tar", "member": exc.member},
                cause=exc,
            ) from exc
        archive = f"/tmp/.wrenn-hydrate-{self.state.session_id.hex}.tar"
        try:
            await self._capsule.files.write(archive, bytes(raw))
            quoted_root = shlex.quote(root.as_posix())
            result = await self._capsule.commands.run(
                [
                    "/bin/sh",
                    "-c",
                    f"mkdir -p -- {quoted_root} && tar -C {quoted_root} -xf {shlex.quote(archive)}",
                ],
                timeout=AGENTS_TAR_TIMEOUT,
                cwd="/",
            )
            if result.exit_code != 0:
                raise WorkspaceArchiveWriteError(
                    path=root,
                    context={"reason": "hydrate_nonzero_exit", "exit_code": result.exit_code},
                )
            self._workspace_root_ready = True
        except WrennError as exc:
            raise WorkspaceArchiveWriteError(path=root, cause=exc) from exc
        finally:
            await self._remove_quietly(archive)

    async def _remove_quietly(self, path: str) -> None:
        try:
            await self._capsule.files.remove(path)
        except WrennError:
            pass


class WrennSandboxClient(BaseSandboxClient[WrennSandboxClientOptions]):  # type: ignore[misc, unused-ignore]
    """Creates and resumes ``WrennSandboxSession`` s (one capsule each)."""

    backend_id = "wrenn"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        instrumentation: Instrumentation | None = None,
    ) -> None:
        self._api_key = api_key
        self._base_url = base_url
        self._instrumentation = (
            instrumentation if instrumentation is not None else Instrumentation()
        )
        self._dependencies = None

    def _client(self, options_key: Any = None, base_url: str | None = None) -> AsyncWrennClient:
        key = (
            options_key.get_secret_value()
            if isinstance(options_key, SecretStr)
            else options_key or self._api_key
        )
        return AsyncWrennClient(api_key=key, base_url=base_url or self._base_url)

    async def create(
        self,
        *,
        snapshot: SnapshotSpec | SnapshotBase | None = None,
        manifest: Manifest | None = None,
        options: WrennSandboxClientOptions,
    ) -> SandboxSession:
        if options is None:
            raise ValueError("WrennSandboxClient.create requires options")
        manifest = manifest if manifest is not None else Manifest()
        self._validate_manifest_for_create(manifest)
        capsule = await self._new_capsule(
            self._client(options.api_key, options.base_url),
            options.template,
            options.vcpus,
            options.memory_mb,
            options.timeout,
        )
        session_id = uuid.uuid4()
        state = WrennSandboxSessionState(
            session_id=session_id,
            manifest=manifest,
            snapshot=resolve_snapshot(snapshot, str(session_id)),
            capsule_id=capsule.capsule_id,
            template=options.template,
            vcpus=options.vcpus,
            memory_mb=options.memory_mb,
            capsule_timeout=options.timeout,
            base_envs=dict(options.envs or {}),
            pause_on_exit=options.pause_on_exit,
            base_url=options.base_url,
        )
        inner = WrennSandboxSession(state=state, capsule=capsule)
        return self._wrap_session(inner, instrumentation=self._instrumentation)

    async def _new_capsule(
        self,
        client: AsyncWrennClient,
        template: str | None,
        vcpus: int | None,
        memory_mb: int | None,
        timeout: int | None,
    ) -> AsyncCapsule:
        try:
            info = await client.capsules.create(
                template=template,
                vcpus=vcpus,
                memory_mb=memory_mb,
                timeout_sec=timeout,
                namespace=NAMESPACE,
            )
        except BaseException:
            await client.aclose()
            raise
        return AsyncCapsule(_capsule_id=info.id, _client=client, _info=info)

    async def delete(self, session: SandboxSession) -> SandboxSession:
        """The capsule is destroyed (or paused) by the session's own shutdown."""
        if not isinstance(session._inner, WrennSandboxSession):
            raise TypeError("WrennSandboxClient.delete expects a WrennSandboxSession")
        return session

    async def resume(self, state: SandboxSessionState) -> SandboxSession:
        """Reattach to the session's capsule (resuming it if paused); if it is gone or
        failed, create a new capsule, which the SDK then hydrates from the snapshot."""
        if not isinstance(state, WrennSandboxSessionState):
            raise TypeError("WrennSandboxClient.resume expects a WrennSandboxSessionState")
        state.assert_path_grants_rebound()
        client = self._client(None, state.base_url)
        capsule: AsyncCapsule | None = None
        try:
            info = await client.capsules.get(state.capsule_id)
            if info.status in (Status.paused, Status.hibernated, Status.pausing):
                if info.status is Status.pausing:
                    await client.capsules.wait(state.capsule_id, status=("paused", "hibernated"))
                info = await client.capsules.resume(state.capsule_id)
            if info.status is Status.starting:
                info = await client.capsules.wait(state.capsule_id, status="running")
            if info.status is Status.running:
                capsule = AsyncCapsule(_capsule_id=info.id, _client=client, _info=info)
        except WrennError as exc:
            logger.info(
                "capsule %s cannot be resumed (%s); creating a new one",
                state.capsule_id,
                type(exc).__name__,
            )
        except BaseException:
            await client.aclose()
            raise
        reattached = capsule is not None
        if capsule is None:
            capsule = await self._new_capsule(
                client, state.template, state.vcpus, state.memory_mb, state.capsule_timeout
            )
            state.capsule_id = capsule.capsule_id
            state.workspace_root_ready = False
        inner = WrennSandboxSession(state=state, capsule=capsule)
        inner._set_start_state_preserved(reattached, system=reattached)
        return self._wrap_session(inner, instrumentation=self._instrumentation)

    def deserialize_session_state(self, payload: dict[str, object]) -> SandboxSessionState:
        return self._deserialize_session_state_payload(payload, WrennSandboxSessionState)


def _is_missing(exc: WrennError) -> bool:
    message = (exc.message or "").lower()
    if isinstance(exc, WrennNotFoundError):
        return "sandbox" not in message and "capsule" not in message
    return isinstance(exc, WrennAgentError) and "no such file" in message
