"""A command's output as typed events (``AsyncCommandStream``) and a background command
(``AsyncCommandHandle``), with the reading both the foreground run and the handle use."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec

from .._exceptions import (
    DeadlineReached,
    WrennCommandTimeoutError,
    WrennStreamError,
    WrennStreamInterruptedError,
)
from .._models_base import json_encoder
from .._process import (
    CommandResult,
    OutputBuffer,
    StreamErrorEvent,
    StreamEvent,
    StreamExitEvent,
    StreamStartEvent,
    StreamStderrEvent,
    StreamStdoutEvent,
    parse_stream_frame,
)
from .._validate import positive_seconds
from ._stream import AsyncLazyStream
from ._websocket import AsyncWebSocket

if TYPE_CHECKING:
    from .client import AsyncWrennClient
    from .commands import AsyncCommands


class AsyncCommandStream(AsyncLazyStream):
    """The output of a command as typed events, ending after its exit (or error) event.

    Iterate it directly, or use it as a context manager: leaving the block (or breaking
    out of the loop inside it) closes the connection at once. A connection that ends
    before the exit event raises ``WrennStreamInterruptedError`` instead of looking like
    a clean finish.
    """

    def __init__(self, client: AsyncWrennClient, path: str, start: dict[str, Any] | None) -> None:
        self._client = client
        self._path = path
        self._start = start
        self._socket: AsyncWebSocket | None = None
        self._finished = False
        self.pid: int | None = None
        self.exit_code: int | None = None

    async def _open(self) -> AsyncWebSocket:
        socket = await self._client._api._ws(self._path)
        self._socket = socket
        if self._start is not None:
            await socket.send_text(json_encoder.encode(self._start).decode())
        return socket

    def _is_open(self) -> bool:
        return self._socket is not None

    async def __anext__(self) -> StreamEvent:
        event = await self.next_event()
        if event is None:
            raise StopAsyncIteration
        return event

    async def next_event(self, deadline: float | None = None) -> StreamEvent | None:
        """The next event, or None after the last one; ``DeadlineReached`` past ``deadline``."""
        if self._finished:
            return None
        socket = self._socket if self._socket is not None else await self._open()
        message = await socket.receive(deadline)
        if message is None:
            code = socket.close_code
            await self.aclose()
            raise WrennStreamInterruptedError(
                "the command stream ended before the command's exit event"
                + (f" (close code {code})" if code is not None else " (connection dropped)"),
                close_code=code,
            )
        try:
            frame = msgspec.json.decode(message)
        except msgspec.DecodeError as exc:
            await self.aclose()
            raise WrennStreamError(
                "invalid_frame", f"a stream frame is not valid JSON: {exc}"
            ) from exc
        if not isinstance(frame, dict):
            await self.aclose()
            raise WrennStreamError("invalid_frame", "a stream frame is not a JSON object")
        event = parse_stream_frame(frame)
        if isinstance(event, StreamStartEvent) and event.pid is not None:
            self.pid = event.pid
        elif isinstance(event, (StreamExitEvent, StreamErrorEvent)):
            if isinstance(event, StreamExitEvent):
                self.exit_code = event.exit_code
            await self.aclose()
        return event

    async def stop(self) -> None:
        """Ask the server to stop relaying (it may also stop the command) and close."""
        if self._socket is not None and not self._socket.ended:
            try:
                await self._socket.send_text('{"type":"stop"}')
            except WrennStreamInterruptedError:
                pass
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection; iteration then stops. Safe to call more than once."""
        self._finished = True
        socket, self._socket = self._socket, None
        if socket is not None:
            await socket.aclose()


class AsyncCommandHandle:
    """A background command: its ``pid`` and ``tag``, and ways to wait for, kill or follow it."""

    def __init__(self, commands: AsyncCommands, pid: int, tag: str, capsule_id: str) -> None:
        self._commands = commands
        self.pid = pid
        self.tag = tag
        self.capsule_id = capsule_id

    def __repr__(self) -> str:
        return f"CommandHandle(pid={self.pid!r}, tag={self.tag!r}, capsule_id={self.capsule_id!r})"

    async def wait(self, timeout: float | None = None, *, keepalive: bool = False) -> CommandResult:
        """Follow the command's output until it exits and return the result.

        Only output produced after this call is seen (the server does not replay; a
        durable command, ``commands.start_durable``, keeps it all). Past ``timeout``
        seconds a ``WrennCommandTimeoutError`` is raised and the command keeps running;
        use ``kill()`` to stop it. ``keepalive=True`` holds a lease on the capsule
        while waiting, so a long, quiet command is not auto-paused under you.
        """
        deadline = (
            None if timeout is None else time.monotonic() + positive_seconds(timeout, "timeout")
        )
        stdout, stderr = OutputBuffer(), OutputBuffer()
        started = time.monotonic()
        async with self._commands._keepalive(keepalive), self.connect() as stream:
            try:
                await _collect(
                    stream,
                    deadline,
                    stdout,
                    stderr,
                    "process_error",
                    f"cannot follow process {self.pid}",
                )
            except DeadlineReached:
                raise WrennCommandTimeoutError(
                    f"process {self.pid} did not exit within {timeout:g} s",
                    stdout=stdout.text(),
                    stderr=stderr.text(),
                    pid=self.pid,
                ) from None
        return _result(stream, stdout, stderr, started)

    async def kill(self, signal: str = "SIGKILL") -> None:
        """Send SIGKILL (or SIGTERM) to the command."""
        await self._commands.kill(self.pid, signal=signal)

    def connect(self) -> AsyncCommandStream:
        """Follow the command's output from now on."""
        return self._commands.connect(self.pid)


async def _collect(
    stream: AsyncCommandStream,
    deadline: float | None,
    stdout: OutputBuffer,
    stderr: OutputBuffer,
    error_code: str,
    error_text: str,
) -> None:
    """Read a command's events up to its exit, keeping its output in the bounded buffers.

    ``DeadlineReached`` propagates with the buffers holding the output so far; an error
    event from the server becomes ``WrennStreamError``.
    """
    while True:
        event = await stream.next_event(deadline)
        if event is None or isinstance(event, StreamExitEvent):
            return
        if isinstance(event, StreamErrorEvent):
            raise WrennStreamError(error_code, f"{error_text}: {event.data}")
        if isinstance(event, StreamStdoutEvent):
            stdout.append(event.data)
        elif isinstance(event, StreamStderrEvent):
            stderr.append(event.data)


def _result(
    stream: AsyncCommandStream, stdout: OutputBuffer, stderr: OutputBuffer, started: float
) -> CommandResult:
    return CommandResult(
        stdout=stdout.text(),
        stderr=stderr.text(),
        exit_code=stream.exit_code if stream.exit_code is not None else -1,
        duration_ms=int((time.monotonic() - started) * 1000),
        stdout_dropped=stdout.dropped,
        stderr_dropped=stderr.dropped,
    )
