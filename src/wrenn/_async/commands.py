"""``capsule.commands``: run, stream, list and kill processes inside a capsule."""

from __future__ import annotations

import builtins
import contextlib
import secrets
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

import msgspec

from .._compat import asleep
from .._constants import (
    DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_SPOOL_BUDGET,
    KILL_GRACE,
    MIN_SPOOL_BUDGET,
)
from .._durable import (
    SUPERVISOR,
    WRAPPER,
    check_tag,
    read_size,
    segment_size,
    spool_dir,
)
from .._exceptions import (
    DeadlineReached,
    WrennCommandTimeoutError,
    WrennNotFoundError,
    WrennStreamInterruptedError,
)
from .._models_base import json_encoder
from .._models_data import BackgroundExecResponse, ExecRequest, process_list_decoder
from .._process import (
    CommandResult,
    OutputBuffer,
    ProcessInfo,
    StreamErrorEvent,
    StreamExitEvent,
    shell_argv,
)
from .._responses import decode
from .._urls import build_path
from .._validate import optional_int, optional_str, positive_seconds, string_map
from ._resource import AsyncAPIResource
from .command_stream import AsyncCommandHandle, AsyncCommandStream, _collect, _result
from .durable import AsyncDurableCommand, AsyncDurableStream, check_offset
from .files import AsyncFiles

if TYPE_CHECKING:
    from .client import AsyncWrennClient
    from .lease import AsyncLease

_JSON = {"Content-Type": "application/json"}
_background_decoder = msgspec.json.Decoder(BackgroundExecResponse)
_SIGNALS = ("SIGKILL", "SIGTERM")


def _selector(pid: int | str) -> str:
    if isinstance(pid, bool) or not isinstance(pid, (int, str)):
        raise TypeError(f"pid must be an int (or a tag string), not {type(pid).__name__}")
    if isinstance(pid, int) and pid <= 0:
        raise ValueError(f"pid must be positive, got {pid}")
    return str(pid)


class AsyncCommands(AsyncAPIResource):
    """Processes inside one capsule."""

    def __init__(self, client: AsyncWrennClient, capsule_id: str) -> None:
        super().__init__(client)
        self._capsule_id = capsule_id
        self._files = AsyncFiles(client, capsule_id)

    def _path(self, template: str, **params: object) -> str:
        return build_path(template, id=self._capsule_id, **params)

    def _lease(self, keepalive: bool) -> AsyncLease | None:
        return self._client.capsules.lease(self._capsule_id) if keepalive else None

    def _keepalive(self, keepalive: bool) -> AsyncLease | contextlib.nullcontext[None]:
        lease = self._lease(keepalive)
        return lease if lease is not None else contextlib.nullcontext()

    @overload
    async def run(
        self,
        cmd: str | Sequence[str],
        *,
        background: Literal[False] = False,
        timeout: float | None = DEFAULT_COMMAND_TIMEOUT,
        envs: dict[str, str] | None = None,
        cwd: str | None = None,
        tag: str | None = None,
        durable: bool = False,
        keepalive: bool = False,
    ) -> CommandResult: ...

    @overload
    async def run(
        self,
        cmd: str | Sequence[str],
        *,
        background: Literal[True],
        timeout: float | None = DEFAULT_COMMAND_TIMEOUT,
        envs: dict[str, str] | None = None,
        cwd: str | None = None,
        tag: str | None = None,
        durable: Literal[False] = False,
        keepalive: bool = False,
    ) -> AsyncCommandHandle: ...

    @overload
    async def run(
        self,
        cmd: str | Sequence[str],
        *,
        background: Literal[True],
        timeout: float | None = DEFAULT_COMMAND_TIMEOUT,
        envs: dict[str, str] | None = None,
        cwd: str | None = None,
        tag: str | None = None,
        durable: Literal[True],
        keepalive: bool = False,
    ) -> AsyncDurableCommand: ...

    async def run(
        self,
        cmd: str | Sequence[str],
        *,
        background: bool = False,
        timeout: float | None = DEFAULT_COMMAND_TIMEOUT,
        envs: dict[str, str] | None = None,
        cwd: str | None = None,
        tag: str | None = None,
        durable: bool = False,
        keepalive: bool = False,
    ) -> CommandResult | AsyncCommandHandle | AsyncDurableCommand:
        """Run a command: a shell string (``/bin/sh -c``) or an argv list (no shell).

        In the foreground, wait for it and return its ``CommandResult``. Past ``timeout``
        seconds (``None`` means the platform default of 30) the command is stopped with
        SIGTERM, then SIGKILL after a short grace, and ``WrennCommandTimeoutError``
        carries the output produced so far. With ``background=True``, start it and
        return a handle at once (``tag`` names it; ``timeout`` does not apply). A
        foreground ``tag`` is sent with the command too, as the official SDK does.

        ``durable=True`` runs it as ``start_durable`` does: its output is spooled inside
        the capsule, so it survives this client (``attach(tag)`` from any client gets it
        back); in the background that returns an ``AsyncDurableCommand``. With
        ``keepalive=True`` a lease keeps the capsule from auto-pausing while the call
        runs (a foreground command, or starting a background one).
        """
        environment = string_map(envs, "envs")
        directory = optional_str(cwd, "cwd")
        label = optional_str(tag, "tag")
        async with self._keepalive(keepalive):
            if background and durable:
                return await self.start_durable(cmd, tag=label, envs=environment, cwd=directory)
            if background:
                return await self._start_background(cmd, environment, directory, label)
            limit = positive_seconds(
                DEFAULT_COMMAND_TIMEOUT if timeout is None else timeout, "timeout"
            )
            if durable:
                handle = await self.start_durable(cmd, tag=label, envs=environment, cwd=directory)
                return await self._run_durable(handle, limit)
            return await self._run_foreground(cmd, limit, environment, directory, tag=label)

    async def start_durable(
        self,
        cmd: str | Sequence[str],
        *,
        tag: str | None = None,
        envs: dict[str, str] | None = None,
        cwd: str | None = None,
        budget: int = DEFAULT_SPOOL_BUDGET,
    ) -> AsyncDurableCommand:
        """Start a command whose output is kept inside the capsule, with byte offsets.

        The command (a shell string, or an argv list that no shell parses) runs as a
        tagged background process under a small shell wrapper that spools its stdout
        and stderr to files under ``/tmp/.wrenn-durable/<tag>/`` and records its exit
        status there. ``attach(tag, from_offset=...)`` (from this client, another one,
        or after a restart) replays what was missed and follows the rest live. Each
        stream keeps its latest ``budget`` bytes; older ones are dropped, and a reader
        is told exactly how many. ``tag`` (1 to 64 of ``[A-Za-z0-9._-]``) defaults to a
        fresh one; reusing a tag replaces its old spool. ``remove()`` deletes the spool.
        """
        name = check_tag(tag) if tag is not None else f"durable-{secrets.token_hex(8)}"
        size = optional_int(budget, "budget", minimum=MIN_SPOOL_BUDGET)
        assert size is not None
        program, args = shell_argv(cmd, envs=string_map(envs, "envs"), cwd=optional_str(cwd, "cwd"))
        wrapper = [
            WRAPPER,
            "wrenn-durable",
            SUPERVISOR,
            spool_dir(name),
            str(size),
            str(segment_size(size)),
            str(read_size(size)),
        ]
        handle = await self._start_background(
            ["/bin/sh", "-c", *wrapper, program, *args], None, None, name
        )
        return AsyncDurableCommand(self, name, handle.pid, self._capsule_id)

    def durable(self, tag: str) -> AsyncDurableCommand:
        """The durable command tagged ``tag`` (started by any client), to attach to or wait for."""
        return AsyncDurableCommand(self, check_tag(tag), None, self._capsule_id)

    def attach(
        self,
        tag: str,
        from_offset: int = 0,
        *,
        stderr_offset: int = 0,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        keepalive: bool = False,
    ) -> AsyncDurableStream:
        """Follow a durable command: its stdout from byte ``from_offset`` (and stderr
        from ``stderr_offset``) as it was spooled, then live, until its exit event.

        Works from any client and after a restart: pass the offsets of the last bytes
        you handled (``stream.stdout_offset`` / ``stderr_offset``) and nothing is
        repeated or lost, unless the spool's budget dropped it, which a
        ``StreamDroppedEvent`` then says. Following polls the spool: one listing per
        look, reads only when it grew, looks growing from 50 ms up to
        ``poll_interval`` seconds apart while nothing changes. ``keepalive=True``
        holds a lease while the stream is open (use it as a context manager).
        """
        return AsyncDurableStream(
            self,
            check_tag(tag),
            check_offset(from_offset, "from_offset"),
            check_offset(stderr_offset, "stderr_offset"),
            positive_seconds(poll_interval, "poll_interval"),
            self._lease(keepalive),
        )

    async def _run_durable(self, handle: AsyncDurableCommand, timeout: float) -> CommandResult:
        """Wait for a durable command; past ``timeout`` stop it as a foreground one is."""
        try:
            return await handle.wait(timeout)
        except WrennCommandTimeoutError:
            with contextlib.suppress(WrennNotFoundError):
                await handle.kill("SIGTERM")
                deadline = time.monotonic() + KILL_GRACE
                while await handle.exit_code() is None and time.monotonic() < deadline:
                    await asleep(0.1)
                if await handle.exit_code() is None:
                    await handle.kill("SIGKILL")
            raise

    async def _start_background(
        self,
        cmd: str | Sequence[str],
        envs: dict[str, str] | None,
        cwd: str | None,
        tag: str | None,
    ) -> AsyncCommandHandle:
        program, args = shell_argv(cmd, envs=None, cwd=None)
        body = ExecRequest(cmd=program, args=args, background=True, tag=tag, envs=envs, cwd=cwd)
        response = await self._request(
            "POST",
            self._path("/v1/capsules/{id}/exec"),
            ok=(202, 200),
            content=json_encoder.encode(body),
            headers=_JSON,
        )
        started = decode(_background_decoder, response)
        return AsyncCommandHandle(self, started.pid, started.tag or "", self._capsule_id)

    async def _run_foreground(
        self,
        cmd: str | Sequence[str],
        timeout: float,
        envs: dict[str, str] | None,
        cwd: str | None,
        secret_envs: dict[str, str] | None = None,
        *,
        tag: str | None = None,
    ) -> CommandResult:
        """Run to completion over the exec stream.

        ``envs`` and ``cwd`` are applied by a shell prologue (so they hold on every
        server); ``secret_envs`` travel only in the request's environment field, never
        in argv, where any process in the capsule could read them. ``tag`` travels in
        the start message, as the official SDK sends it with a foreground exec.
        """
        program, args = shell_argv(cmd, envs=envs, cwd=cwd)
        start: dict[str, Any] = {"type": "start", "cmd": program, "args": args}
        if tag is not None:
            start["tag"] = tag
        if secret_envs:
            start["envs"] = secret_envs
        stdout, stderr = OutputBuffer(), OutputBuffer()
        started = time.monotonic()
        deadline = started + timeout
        stream = AsyncCommandStream(
            self._client, self._path("/v1/capsules/{id}/exec/stream"), start
        )
        try:
            await _collect(
                stream, deadline, stdout, stderr, "command_error", "the command could not run"
            )
        except DeadlineReached:
            await self._stop_timed_out(stream)
            raise WrennCommandTimeoutError(
                f"the command did not finish within {timeout:g} s and was stopped",
                stdout=stdout.text(),
                stderr=stderr.text(),
                pid=stream.pid,
            ) from None
        finally:
            await stream.aclose()
        return _result(stream, stdout, stderr, started)

    async def _stop_timed_out(self, stream: AsyncCommandStream) -> None:
        """SIGTERM, a grace period for the exit event, then SIGKILL: never left running."""
        if stream.pid is None:
            await stream.stop()
            return
        for signal, grace in (("SIGTERM", KILL_GRACE), ("SIGKILL", KILL_GRACE)):
            try:
                await self.kill(stream.pid, signal=signal)
            except WrennNotFoundError:
                break  # already gone
            deadline = time.monotonic() + grace
            try:
                while True:
                    event = await stream.next_event(deadline)
                    if event is None or isinstance(event, (StreamExitEvent, StreamErrorEvent)):
                        return
            except (DeadlineReached, WrennStreamInterruptedError):
                continue
        await stream.stop()

    async def list(self) -> builtins.list[ProcessInfo]:
        """Every process the capsule's agent tracks: background commands and terminals."""
        response = await self._request("GET", self._path("/v1/capsules/{id}/processes"))
        listing = decode(process_list_decoder, response)
        return [
            ProcessInfo(pid=p.pid, tag=p.tag, cmd=p.cmd, args=p.args) for p in listing.processes
        ]

    async def kill(self, pid: int | str, *, signal: str = "SIGKILL") -> None:
        """Send SIGKILL (default) or SIGTERM to a process, chosen by pid or by tag.

        The tag of a durable command ends the command itself, not only its wrapper,
        and its exit status (137, or 143 for SIGTERM) is recorded in the spool.
        """
        if signal not in _SIGNALS:
            raise ValueError(f"signal must be one of {', '.join(_SIGNALS)}, not {signal!r}")
        path = self._path("/v1/capsules/{id}/processes/{selector}", selector=_selector(pid))
        await self._request(
            "DELETE",
            path,
            ok=(204, 200),
            params={"signal": signal},
            missing_ok_on_retry=True,
        )

    def connect(self, pid: int | str) -> AsyncCommandStream:
        """Follow a running process's output (new output only), by pid or by tag."""
        path = self._path("/v1/capsules/{id}/processes/{selector}/stream", selector=_selector(pid))
        return AsyncCommandStream(self._client, path, None)

    def stream(
        self,
        cmd: str,
        args: builtins.list[str] | None = None,
        *,
        envs: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> AsyncCommandStream:
        """Start a command and stream its output as it is produced.

        Without ``args``, ``cmd`` runs through ``/bin/sh -c``; with ``args``, ``cmd`` is
        the program and ``args`` its arguments (no shell).
        """
        if not isinstance(cmd, str) or not cmd:
            raise TypeError("cmd must be a non-empty string")
        argv: str | builtins.list[str] = [cmd, *args] if args is not None else cmd
        program, arguments = shell_argv(
            argv, envs=string_map(envs, "envs"), cwd=optional_str(cwd, "cwd")
        )
        return AsyncCommandStream(
            self._client,
            self._path("/v1/capsules/{id}/exec/stream"),
            {"type": "start", "cmd": program, "args": arguments},
        )
