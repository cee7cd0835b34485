"""An Inspect sandbox provider that runs each sample in its own Wrenn capsule.

Install ``wrenn[inspect]``; Inspect finds the provider through the ``inspect_ai`` entry
point, so a task only names it::

    Task(dataset=..., solver=..., scorer=..., sandbox="wrenn")
    Task(..., sandbox=("wrenn", "my-template"))          # boot from a template or snapshot
    Task(..., sandbox=SandboxEnvironmentSpec("wrenn", WrennSandboxConfig(vcpus=2)))

Each sample gets a fresh capsule (``sample_init``) that is destroyed when the sample ends
(``sample_cleanup``), also when it fails or is cancelled; ``task_cleanup`` destroys any
capsule a cleanup could not reach. The API key and URL come from ``WRENN_API_KEY`` and
``WRENN_BASE_URL`` unless the config gives them. Concurrency is bounded by Inspect's
``max_sandboxes`` (default: ``WRENN_INSPECT_MAX_SANDBOXES``, else 16).

Written against anyio and the async SDK only, so it runs under both of Inspect's async
backends (``INSPECT_ASYNC_BACKEND=trio`` as well as asyncio).
"""

from __future__ import annotations

import errno
import importlib
import json
import logging
import os
import posixpath
import secrets
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Literal, overload

import anyio
from inspect_ai.util import (  # type: ignore[import-not-found, unused-ignore]
    ExecResult,
    OutputLimitExceededError,
    SandboxConnection,
    SandboxEnvironment,
    SandboxEnvironmentConfigType,
    SandboxEnvironmentLimits,
    sandboxenv,
)
from inspect_ai.util._sandbox.environment import (  # type: ignore[import-not-found, unused-ignore]
    SandboxUnavailableError,
    SandboxUserUnsupportedError,
)
from pydantic import (  # type: ignore[import-not-found, unused-ignore]
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)

from .._async.capsule import AsyncCapsule
from .._async.client import AsyncWrennClient
from .._constants import (
    INSPECT_CLEANUP_TIMEOUT,
    INSPECT_KILL_TIMEOUT,
    INSPECT_MAX_SANDBOXES,
    INSPECT_STREAM_UPLOAD_OVER,
    INSPECT_UPLOAD_CHUNK,
)
from .._exceptions import (
    WrennCapsuleStateError,
    WrennConflictError,
    WrennError,
    WrennNotFoundError,
    WrennStreamInterruptedError,
)
from .._process import (
    StreamErrorEvent,
    StreamExitEvent,
    StreamStartEvent,
    StreamStderrEvent,
    StreamStdoutEvent,
)

__all__ = ["WrennSandboxConfig", "WrennSandboxEnvironment"]

logger = logging.getLogger("wrenn.inspect")

ENV_MAX_SANDBOXES = "WRENN_INSPECT_MAX_SANDBOXES"
NAMESPACE = "inspect"
# Runs the caller's argv with stdin read from a file (the provider's own wrapper runs
# the shell by absolute path; the command itself is resolved through the capsule's PATH).
_STDIN_WRAPPER = 'f=$1; shift; exec "$@" <"$f"'


class WrennSandboxConfig(BaseModel):  # type: ignore[misc, unused-ignore]
    """How each sample's capsule is created (all optional).

    ``template`` (or ``snapshot``, the same thing under the name of a snapshot) is what
    the capsule boots from; ``vcpus`` and ``memory_mb`` size it (ignored when booting
    from a snapshot); ``timeout`` is its inactivity auto-pause in seconds (0 disables).
    ``working_dir`` is where relative paths and commands start (default: the
    capsule's own working directory). ``api_key`` and ``base_url`` default to
    ``WRENN_API_KEY`` and ``WRENN_BASE_URL``; the key is never written to a log.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    template: str | None = None
    snapshot: str | None = None
    vcpus: int | None = Field(default=None, ge=1)
    memory_mb: int | None = Field(default=None, ge=1)
    timeout: int | None = Field(default=None, ge=0)
    working_dir: str | None = None
    base_url: str | None = None
    api_key: SecretStr | None = Field(default=None, exclude=True, repr=False)

    @model_validator(mode="after")  # type: ignore[untyped-decorator, unused-ignore]
    def _one_source(self) -> WrennSandboxConfig:
        if self.template is not None and self.snapshot is not None:
            raise ValueError("give either template or snapshot, not both")
        if self.working_dir is not None and not self.working_dir.startswith("/"):
            raise ValueError("working_dir must be an absolute path")
        return self

    @property
    def boot_from(self) -> str | None:
        """The template or snapshot name to boot from (None: the server's default)."""
        return self.snapshot if self.snapshot is not None else self.template

    def client(self) -> AsyncWrennClient:
        """A new client for this config (the caller closes it)."""
        key = self.api_key.get_secret_value() if self.api_key is not None else None
        return AsyncWrennClient(api_key=key, base_url=self.base_url)


def resolve_config(config: SandboxEnvironmentConfigType | None) -> WrennSandboxConfig:
    """The config as a ``WrennSandboxConfig``: None is the default one; a string is a
    JSON or YAML file with the config's fields if such a file exists, else the name of
    the template or snapshot to boot from."""
    if config is None:
        return WrennSandboxConfig()
    if isinstance(config, WrennSandboxConfig):
        return config
    if isinstance(config, str):
        path = Path(config)
        if path.suffix.lower() in (".json", ".yaml", ".yml") and path.is_file():
            text = path.read_text(encoding="utf-8")
            if path.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                yaml: Any = importlib.import_module("yaml")  # a dependency of inspect-ai
                data = yaml.safe_load(text)
            loaded: WrennSandboxConfig = WrennSandboxConfig.model_validate(data or {})
            return loaded
        return WrennSandboxConfig(template=config)
    if isinstance(config, BaseModel):
        converted: WrennSandboxConfig = WrennSandboxConfig.model_validate(config.model_dump())
        return converted
    raise TypeError(f"unsupported config for the wrenn sandbox: {type(config).__name__}")


# Every environment with a live capsule, by task name: task_cleanup's last chance.
_live: dict[str, set[WrennSandboxEnvironment]] = {}


@sandboxenv(name="wrenn")  # type: ignore[untyped-decorator, unused-ignore]
class WrennSandboxEnvironment(SandboxEnvironment):  # type: ignore[misc, unused-ignore]
    """One sample's capsule, as an Inspect sandbox environment.

    ``capsule`` is the ``wrenn.AsyncCapsule`` behind it, for anything Inspect's
    interface does not cover (snapshots, terminals, ports).
    """

    def __init__(
        self, capsule: AsyncCapsule, working_dir: str, user: tuple[str, str], task_name: str
    ) -> None:
        super().__init__()
        self._capsule = capsule
        self._working_dir = working_dir
        self._user = user  # (uid, name) that commands run as
        self._task_name = task_name
        self._destroyed = False

    @property
    def capsule(self) -> AsyncCapsule:
        return self._capsule

    @property
    def working_dir(self) -> str:
        return self._working_dir

    def __repr__(self) -> str:
        return f"<WrennSandboxEnvironment {self._capsule.capsule_id}>"

    # --- lifecycle ----------------------------------------------------------------

    @classmethod
    def config_deserialize(cls, config: dict[str, Any]) -> BaseModel:
        return WrennSandboxConfig.model_validate(config)

    @classmethod
    def default_concurrency(cls) -> int | None:
        value = os.environ.get(ENV_MAX_SANDBOXES, "").strip()
        if value:
            try:
                limit = int(value)
            except ValueError:
                raise ValueError(f"{ENV_MAX_SANDBOXES} must be an integer, not {value!r}")
            if limit < 1:
                raise ValueError(f"{ENV_MAX_SANDBOXES} must be at least 1, not {limit}")
            return limit
        return INSPECT_MAX_SANDBOXES

    @classmethod
    async def task_init(cls, task_name: str, config: SandboxEnvironmentConfigType | None) -> None:
        # Fail before any sample starts on a bad config or a missing API key (no I/O).
        settings = resolve_config(config)
        client = settings.client()
        await client.aclose()

    @classmethod
    async def sample_init(
        cls,
        task_name: str,
        config: SandboxEnvironmentConfigType | None,
        metadata: dict[str, str],
    ) -> dict[str, SandboxEnvironment]:
        settings = resolve_config(config)
        client = settings.client()
        try:
            # A create that fails or is cancelled destroys its capsule itself.
            info = await client.capsules.create(
                template=settings.boot_from,
                vcpus=settings.vcpus,
                memory_mb=settings.memory_mb,
                timeout_sec=settings.timeout,
                namespace=NAMESPACE,
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await client.aclose()
            raise
        capsule = AsyncCapsule(_capsule_id=info.id, _client=client, _info=info)
        try:
            working_dir, user = await _probe(capsule, settings.working_dir)
        except BaseException:
            await _destroy(capsule, interrupted=True)
            raise
        environment = cls(capsule, working_dir, user, task_name)
        _live.setdefault(task_name, set()).add(environment)
        return {"default": environment}

    @classmethod
    async def sample_cleanup(
        cls,
        task_name: str,
        config: SandboxEnvironmentConfigType | None,
        environments: dict[str, SandboxEnvironment],
        interrupted: bool,
    ) -> None:
        for environment in environments.values():
            if isinstance(environment, WrennSandboxEnvironment):
                await environment._destroy(interrupted)

    @classmethod
    async def task_cleanup(
        cls, task_name: str, config: SandboxEnvironmentConfigType | None, cleanup: bool
    ) -> None:
        left = _live.pop(task_name, set())
        if not left:
            return
        if not cleanup:
            ids = ", ".join(sorted(e._capsule.capsule_id for e in left))
            logger.warning("sandbox cleanup is off: capsules left running: %s", ids)
            return
        for environment in list(left):
            await environment._destroy(True)

    @classmethod
    async def cli_cleanup(cls, id: str | None) -> None:
        """``inspect sandbox cleanup wrenn [ID]``: destroy one capsule, or every capsule
        this provider created (those labelled with its namespace) that is still there."""
        async with WrennSandboxConfig().client() as client:
            if id is not None:
                try:
                    await client.capsules.destroy(id)
                except WrennNotFoundError:
                    pass
                return
            await client.capsules.reap(NAMESPACE, include_own=True)

    async def _destroy(self, interrupted: bool) -> None:
        if self._destroyed:
            return
        self._destroyed = True
        live = _live.get(self._task_name)
        if live is not None:
            live.discard(self)
        await _destroy(self._capsule, interrupted)

    # --- commands -----------------------------------------------------------------

    async def exec(
        self,
        cmd: list[str],
        input: str | bytes | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: int | None = None,
        timeout_retry: bool = True,
        concurrency: bool = True,
    ) -> ExecResult[str]:
        """Run ``cmd`` (an argv list, resolved through the capsule's PATH) to completion.

        Past ``timeout`` seconds the command is killed and ``TimeoutError`` is raised
        (its ``truncated_output`` holds what it printed). A stream past Inspect's exec
        output limit kills the command and raises ``OutputLimitExceededError`` whose
        ``truncated_output`` is the output up to the limit. ``user`` must be the user
        commands already run as (``SandboxUserUnsupportedError`` otherwise).
        ``timeout_retry`` and ``concurrency`` do not apply: the SDK itself retries what
        is safe to retry, and capsules run remotely.
        """
        if not cmd or not all(isinstance(part, str) for part in cmd):
            raise ValueError("cmd must be a non-empty list of strings")
        if user is not None and user not in self._user:
            raise SandboxUserUnsupportedError(
                f"the wrenn sandbox runs commands as {self._user[1]!r} "
                f"(uid {self._user[0]}); it cannot run them as {user!r}"
            )
        directory = self._working_dir if cwd is None else self._resolve(cwd)
        argv = list(cmd)
        stdin_file: str | None = None
        try:
            if input is not None:
                stdin_file = f"/tmp/.wrenn-inspect-stdin-{secrets.token_hex(8)}"
                data = input.encode("utf-8") if isinstance(input, str) else bytes(input)
                await self._upload(stdin_file, data)
                argv = ["/bin/sh", "-c", _STDIN_WRAPPER, "sh", stdin_file, *argv]
            return await self._run(argv, directory, env, timeout)
        except (WrennNotFoundError, WrennConflictError, WrennCapsuleStateError) as exc:
            raise SandboxUnavailableError(
                f"capsule {self._capsule.capsule_id} cannot run commands ({type(exc).__name__})"
            ) from exc
        finally:
            if stdin_file is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(INSPECT_KILL_TIMEOUT):
                    try:
                        await self._capsule.files.remove(stdin_file)
                    except WrennError:
                        pass

    async def _run(
        self, argv: list[str], directory: str, env: dict[str, str] | None, timeout: int | None
    ) -> ExecResult[str]:
        limit = SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE
        stdout, stderr = _Capture(limit), _Capture(limit)
        # The cwd and environment are applied by the SDK's shell prologue (/bin/sh by
        # absolute path), which also makes a missing program an ordinary exit 127.
        stream = self._capsule.commands.stream(argv[0], argv[1:], envs=env, cwd=directory)
        deadline: AbstractContextManager[Any] = (
            anyio.move_on_after(timeout) if timeout is not None else nullcontext()
        )
        scope: Any = None
        async with stream:
            try:
                with deadline as scope:
                    await self._collect(stream, stdout, stderr)
            except BaseException:
                # Cancelled (or failed) while the command runs: it must not run on.
                if stdout.exit_code is None:
                    await self._kill(stdout.pid if stdout.pid is not None else stream.pid, stream)
                raise
            timed_out = scope is not None and scope.cancelled_caught
            over = stdout if stdout.over else stderr if stderr.over else None
            if timed_out or over is not None:
                await self._kill(stdout.pid if stdout.pid is not None else stream.pid, stream)
        exit_code = stdout.exit_code
        if timed_out:
            error = TimeoutError(f"Command timed out after {timeout} seconds")
            partial = stdout.text() + stderr.text()
            if partial:
                error.truncated_output = partial  # type: ignore[attr-defined]
            raise error
        if over is not None:
            raise OutputLimitExceededError(
                limit_str=SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE_STR,
                truncated_output=over.text(),
            )
        if exit_code is None:
            raise WrennStreamInterruptedError("the command's output ended before its exit code")
        return ExecResult(
            success=exit_code == 0,
            returncode=exit_code,
            stdout=stdout.text(),
            stderr=stderr.text(),
        )

    async def _collect(self, stream: Any, stdout: _Capture, stderr: _Capture) -> None:
        """Read the command's events until it exits or a stream passes the limit; the
        pid and exit code are kept on ``stdout``."""
        async for event in stream:
            if isinstance(event, StreamStartEvent):
                stdout.pid = event.pid
            elif isinstance(event, StreamStdoutEvent):
                if not stdout.add(event.data):
                    return
            elif isinstance(event, StreamStderrEvent):
                if not stderr.add(event.data):
                    return
            elif isinstance(event, StreamExitEvent):
                stdout.exit_code = event.exit_code
            elif isinstance(event, StreamErrorEvent):
                raise SandboxUnavailableError(
                    f"capsule {self._capsule.capsule_id} could not start the command"
                )

    async def _kill(self, pid: int | None, stream: Any) -> None:
        """Stop a command we gave up on (bounded, shielded): it must not run on."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(INSPECT_KILL_TIMEOUT):
            try:
                if pid is not None:
                    await self._capsule.commands.kill(pid, signal="SIGKILL")
                else:
                    await stream.stop()
            except WrennError:
                pass  # already gone

    # --- files --------------------------------------------------------------------

    async def write_file(self, file: str, contents: str | bytes) -> None:
        """Write a file, creating its parent directories as Inspect expects."""
        path = self._resolve(file)
        data = contents.encode("utf-8") if isinstance(contents, str) else bytes(contents)
        try:
            try:
                await self._upload(path, data)
            except WrennError as exc:
                parent = posixpath.dirname(path)
                if not isinstance(_file_error(exc, file), FileNotFoundError) or parent in ("", "/"):
                    raise
                await self._capsule.files.make_dir(parent)
                await self._upload(path, data)
        except WrennError as exc:
            mapped = _file_error(exc, file)
            if mapped is None:
                raise
            raise mapped from exc

    async def _upload(self, path: str, data: bytes) -> None:
        if len(data) <= INSPECT_STREAM_UPLOAD_OVER:
            await self._capsule.files.write(path, data)
        else:
            await self._capsule.files.upload_stream(path, _chunks(data))

    @overload
    async def read_file(self, file: str, text: Literal[True] = True) -> str: ...

    @overload
    async def read_file(self, file: str, text: Literal[False]) -> bytes: ...

    async def read_file(self, file: str, text: bool = True) -> str | bytes:
        """Read a file; past Inspect's read limit, ``OutputLimitExceededError`` (the
        download stops there). Text is decoded as strict UTF-8 with newlines kept."""
        if posixpath.basename(file.rstrip("/")) in (".", "..") or file.rstrip("/") == "":
            raise IsADirectoryError(errno.EISDIR, "Is a directory.", file)
        path = self._resolve(file)
        limit = SandboxEnvironmentLimits.MAX_READ_FILE_SIZE
        chunks: list[bytes] = []
        size = 0
        try:
            async with self._capsule.files.download_stream(path) as download:
                async for chunk in download:
                    size += len(chunk)
                    if size > limit:
                        raise OutputLimitExceededError(
                            limit_str=SandboxEnvironmentLimits.MAX_READ_FILE_SIZE_STR,
                            truncated_output=None,
                        )
                    chunks.append(chunk)
        except WrennError as exc:
            mapped = _file_error(exc, file)
            if mapped is None:
                raise
            raise mapped from exc
        data = b"".join(chunks)
        return data.decode("utf-8") if text else data

    async def connection(self, *, user: str | None = None) -> SandboxConnection:
        if self._destroyed:
            raise ConnectionError(f"capsule {self._capsule.capsule_id} has been destroyed")
        return SandboxConnection(type="wrenn", command=f"wrenn shell {self._capsule.capsule_id}")

    def default_polling_interval(self) -> float:
        return 0.2

    def _resolve(self, path: str) -> str:
        return path if path.startswith("/") else posixpath.join(self._working_dir, path)


class _Capture:
    """One output stream, up to ``limit`` bytes of UTF-8."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._parts: list[str] = []
        self._size = 0
        self.over = False
        self.pid: int | None = None
        self.exit_code: int | None = None

    def add(self, text: str) -> bool:
        """Keep ``text``; False once the stream passed the limit (what fits is kept)."""
        size = len(text.encode("utf-8", "surrogatepass"))
        if self._size + size <= self._limit:
            self._parts.append(text)
            self._size += size
            return True
        room = self._limit - self._size
        kept = text.encode("utf-8", "surrogatepass")[:room].decode("utf-8", "ignore")
        self._parts.append(kept)
        self._size = self._limit
        self.over = True
        return False

    def text(self) -> str:
        return "".join(self._parts)


async def _probe(capsule: AsyncCapsule, working_dir: str | None) -> tuple[str, tuple[str, str]]:
    """The working directory (created if configured) and the user commands run as."""
    script = 'id -u; id -un 2>/dev/null || echo "?"; pwd'
    if working_dir is not None:
        script = f"mkdir -p -- '{_quote(working_dir)}' && cd -- '{_quote(working_dir)}' && {script}"
    result = await capsule.commands.run(["/bin/sh", "-c", script], timeout=60)
    lines = result.stdout.splitlines()
    if result.exit_code != 0 or len(lines) < 3:
        raise RuntimeError(
            f"capsule {capsule.capsule_id} could not be prepared (exit {result.exit_code}): "
            f"{result.stderr.strip()[:500]}"
        )
    uid, name, directory = lines[0].strip(), lines[1].strip(), lines[-1].strip()
    return (working_dir or directory or "/"), (uid, name)


def _quote(value: str) -> str:
    return value.replace("'", "'\\''")


async def _destroy(capsule: AsyncCapsule, interrupted: bool) -> None:
    """Destroy a capsule and close its client: bounded, shielded, never raises.

    After an interruption the destroy is sent without waiting for the capsule to stop.
    """
    with anyio.CancelScope(shield=True), anyio.move_on_after(INSPECT_CLEANUP_TIMEOUT) as scope:
        try:
            try:
                await capsule.destroy(
                    wait=not interrupted, wait_timeout=INSPECT_CLEANUP_TIMEOUT / 2
                )
            except WrennNotFoundError:
                pass
            except WrennConflictError:
                # In the middle of a transition: let it settle, then destroy.
                await capsule.client.capsules.wait(
                    capsule.capsule_id,
                    status=("running", "paused", "hibernated", "stopped", "error"),
                    timeout=INSPECT_CLEANUP_TIMEOUT / 2,
                )
                await capsule.destroy(wait=False)
            except WrennError as exc:
                logger.warning("could not destroy capsule %s: %s", capsule.capsule_id, exc)
        finally:
            await capsule.aclose()
    if scope.cancelled_caught:
        logger.warning("destroying capsule %s timed out", capsule.capsule_id)


def _file_error(exc: WrennError, file: str) -> OSError | None:
    """The ``OSError`` Inspect expects for a failed file operation, or None."""
    message = (exc.message or "").lower()
    if isinstance(exc, WrennNotFoundError) and ("sandbox" in message or "capsule" in message):
        return None  # the capsule itself is gone
    if "no such file" in message or isinstance(exc, WrennNotFoundError):
        return FileNotFoundError(errno.ENOENT, "No such file or directory.", file)
    if "is a directory" in message:
        return IsADirectoryError(errno.EISDIR, "Is a directory.", file)
    if "not a directory" in message:
        return NotADirectoryError(errno.ENOTDIR, "Not a directory.", file)
    if (
        "permission denied" in message
        or "read-only file system" in message
        or "operation not permitted" in message
    ):
        return PermissionError(errno.EACCES, "Permission denied.", file)
    return None


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(view), INSPECT_UPLOAD_CHUNK):
        yield bytes(view[start : start + INSPECT_UPLOAD_CHUNK])
