"""Durable commands: output spooled inside the capsule, re-attachable from any client.

See ``wrenn._durable`` for the spool layout. Starting is one background exec; following
is polling the spool directory (one listing per look, file reads only when a listing
shows new bytes), with growing delays while nothing changes.
"""

from __future__ import annotations

import codecs
import time
from collections import deque
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from .._compat import asleep
from .._constants import DEFAULT_POLL_INTERVAL, FIRST_POLL_DELAY, LIVENESS_EVERY, POLL_GROWTH
from .._durable import (
    KILL_SCRIPT,
    STREAMS,
    DurableStderrEvent,
    DurableStdoutEvent,
    StreamDroppedEvent,
    parse_segment,
    spool_dir,
)
from .._exceptions import (
    DeadlineReached,
    WrennAgentError,
    WrennCommandTimeoutError,
    WrennNotFoundError,
    WrennStreamError,
)
from .._models_data import FileEntry
from .._process import (
    CommandResult,
    OutputBuffer,
    StreamErrorEvent,
    StreamEvent,
    StreamExitEvent,
    StreamStderrEvent,
    StreamStdoutEvent,
)
from .._validate import optional_int, positive_seconds
from ._stream import AsyncLazyStream
from .lease import AsyncLeaseHold

if TYPE_CHECKING:
    from .commands import AsyncCommands
    from .lease import AsyncLease

_NAMES = {"o": "stdout", "e": "stderr"}


class AsyncDurableStream(AsyncLazyStream):
    """A durable command's output from an offset on, then live, until it exits.

    Yields ``DurableStdoutEvent`` / ``DurableStderrEvent`` (subclasses of the usual
    ``StreamStdoutEvent`` / ``StreamStderrEvent``, adding the exact bytes ``raw`` and
    their ``offset``), a ``StreamDroppedEvent`` where the spool's budget dropped bytes,
    and a ``StreamExitEvent`` last (a ``StreamErrorEvent`` if the command vanished
    without recording its status). ``stdout_offset`` / ``stderr_offset`` are where the
    next bytes will start: pass them to ``attach`` to resume after this stream.
    """

    def __init__(
        self,
        commands: AsyncCommands,
        tag: str,
        stdout_offset: int,
        stderr_offset: int,
        poll_interval: float,
        lease: AsyncLease | None = None,
    ) -> None:
        self._commands = commands
        self.tag = tag
        self._dir = spool_dir(tag)
        self._offsets = {"o": stdout_offset, "e": stderr_offset}
        self._text = {k: codecs.getincrementaldecoder("utf-8")(errors="replace") for k in STREAMS}
        self._dropped = {"o": 0, "e": 0}
        self._poll_interval = poll_interval
        self._delay = FIRST_POLL_DELAY
        self._pending: deque[StreamEvent] = deque()
        self._finished = False
        self._opened = False
        self._last_progress = time.monotonic()
        self._hold = AsyncLeaseHold(lease)
        self.exit_code: int | None = None
        self.pid: int | None = None
        self.polls = 0

    @property
    def stdout_offset(self) -> int:
        return self._offsets["o"]

    @property
    def stderr_offset(self) -> int:
        return self._offsets["e"]

    @property
    def stdout_dropped(self) -> int:
        """Stdout bytes the spool had dropped before this stream could read them."""
        return self._dropped["o"]

    @property
    def stderr_dropped(self) -> int:
        return self._dropped["e"]

    def _is_open(self) -> bool:
        return self._opened

    async def _open(self) -> None:
        self._opened = True
        await self._hold.enter()

    async def aclose(self) -> None:
        """Stop following (the command keeps running). Safe to call more than once."""
        self._finished = True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
        await self._hold.exit(exc_type, exc, tb)

    async def __anext__(self) -> StreamEvent:
        event = await self.next_event()
        if event is None:
            raise StopAsyncIteration
        return event

    async def next_event(self, deadline: float | None = None) -> StreamEvent | None:
        """The next event, or None after the last one; ``DeadlineReached`` past ``deadline``."""
        self._hold.require_block("stream")
        while not self._pending:
            if self._finished:
                return None
            self._opened = True
            await self._poll()
            if self._pending:
                self._delay = FIRST_POLL_DELAY
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineReached
            delay = self._delay
            if deadline is not None:
                delay = max(0.0, min(delay, deadline - time.monotonic()))
            await asleep(delay)
            self._delay = min(self._delay * POLL_GROWTH, self._poll_interval)
        event = self._pending.popleft()
        if isinstance(event, (StreamExitEvent, StreamErrorEvent)):
            await self.aclose()
        return event

    async def _poll(self) -> None:
        """One look at the spool: queue the new bytes of each stream, then the exit."""
        self.polls += 1
        files = self._commands._files
        try:
            entries = await files.list(self._dir)
        except (WrennNotFoundError, WrennAgentError):
            # The platform reports a missing directory as an agent error.
            entries = None
        if entries is None:
            if not await self._running():
                await self.aclose()
                raise WrennNotFoundError(
                    "not_found", f"no durable command is tagged {self.tag!r} in this capsule"
                ) from None
            return  # started a moment ago: the wrapper has not made its directory yet
        names = {entry.name for entry in entries}
        if self.pid is None and "pid" in names:
            self.pid = await self._read_int("pid")
        done = "exit" in names  # written after both spoolers drained: the sizes are final
        progressed = False
        for key in STREAMS:
            progressed = await self._read_stream(key, entries) or progressed
        if progressed:
            self._last_progress = time.monotonic()
        if done:
            code = await self._read_int("exit")
            self.exit_code = code if code is not None else -1
            self._flush_text()
            self._pending.append(StreamExitEvent(self.exit_code))
        elif (
            not progressed
            and time.monotonic() - self._last_progress >= LIVENESS_EVERY
            and not await self._running()
        ):
            self._last_progress = time.monotonic()
            # One more look: the exit status may have been written since the listing.
            if any(e.name == "exit" for e in await files.list(self._dir)):
                return
            self._flush_text()
            self._pending.append(
                StreamErrorEvent(
                    f"durable command {self.tag!r} is not running and recorded no exit "
                    "status (killed with SIGKILL, or the capsule was restarted)"
                )
            )

    async def _read_stream(self, key: str, entries: Sequence[FileEntry]) -> bool:
        segments = sorted(
            (parsed[1], entry.size or 0, entry.name)
            for entry in entries
            if (parsed := parse_segment(entry.name)) is not None and parsed[0] == key
        )
        offset = self._offsets[key]
        progressed = False
        for start, size, name in segments:
            if size == 0 or start + size <= offset:
                continue  # empty (just started) or read already
            if offset < start:
                # The spool dropped these bytes to stay within its budget.
                self._flush_text(key)
                self._pending.append(StreamDroppedEvent(_NAMES[key], offset, start - offset))
                self._dropped[key] += start - offset
                offset = start
                progressed = True
            try:
                data = await self._commands._files.read_bytes(f"{self._dir}/{name}")
            except (WrennNotFoundError, WrennAgentError):
                break  # rotated away since the listing: the next look sees what is left
            chunk = data[offset - start :] if offset - start < len(data) else b""
            if chunk:
                text = self._text[key].decode(chunk)
                cls = DurableStdoutEvent if key == "o" else DurableStderrEvent
                self._pending.append(cls(text, chunk, offset))
                offset += len(chunk)
                progressed = True
        self._offsets[key] = offset
        return progressed

    def _flush_text(self, key: str | None = None) -> None:
        """End each stream's text decoding (an incomplete character becomes U+FFFD)."""
        for k in STREAMS if key is None else (key,):
            tail = self._text[k].decode(b"", final=True)
            if tail:
                cls = StreamStdoutEvent if k == "o" else StreamStderrEvent
                self._pending.append(cls(tail))

    async def _read_int(self, name: str) -> int | None:
        try:
            text = (await self._commands._files.read_bytes(f"{self._dir}/{name}")).strip()
        except (WrennNotFoundError, WrennAgentError):
            return None
        try:
            return int(text)
        except ValueError:
            return None

    async def _running(self) -> bool:
        return any(p.tag == self.tag for p in await self._commands.list())


class AsyncDurableCommand:
    """A durable command: its ``tag``, and ways to attach to it, wait for it or stop it.

    Nothing here lives in this object alone: ``commands.durable(tag)`` (or
    ``commands.attach(tag)``) in any client, in any process, reaches the same command.
    """

    def __init__(self, commands: AsyncCommands, tag: str, pid: int | None, capsule_id: str) -> None:
        self._commands = commands
        self.tag = tag
        self.pid = pid  # the wrapper's pid; the command's own is in the stream's ``pid``
        self.capsule_id = capsule_id
        self.spool_dir = spool_dir(tag)

    def __repr__(self) -> str:
        return f"DurableCommand(tag={self.tag!r}, capsule_id={self.capsule_id!r})"

    def attach(
        self,
        from_offset: int = 0,
        *,
        stderr_offset: int = 0,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        keepalive: bool = False,
    ) -> AsyncDurableStream:
        """Replay the output from ``from_offset`` (stdout bytes) and ``stderr_offset``
        on, then follow it live until the command exits."""
        return self._commands.attach(
            self.tag,
            from_offset,
            stderr_offset=stderr_offset,
            poll_interval=poll_interval,
            keepalive=keepalive,
        )

    async def wait(self, timeout: float | None = None, *, keepalive: bool = False) -> CommandResult:
        """All the output the spool kept and the exit code, once the command exits.

        Unlike a plain background command, output from before this call is included.
        Past ``timeout`` seconds ``WrennCommandTimeoutError`` carries the output so far
        and the command keeps running. ``stdout_dropped`` / ``stderr_dropped`` add up
        the bytes the spool dropped and the characters the result's buffer left out.
        """
        deadline = (
            None if timeout is None else time.monotonic() + positive_seconds(timeout, "timeout")
        )
        stdout, stderr = OutputBuffer(), OutputBuffer()
        started = time.monotonic()
        async with self.attach(keepalive=keepalive) as stream:
            try:
                while True:
                    event = await stream.next_event(deadline)
                    if event is None or isinstance(event, StreamExitEvent):
                        break
                    if isinstance(event, StreamErrorEvent):
                        raise WrennStreamError("process_error", event.data)
                    if isinstance(event, StreamStdoutEvent):
                        stdout.append(event.data)
                    elif isinstance(event, StreamStderrEvent):
                        stderr.append(event.data)
            except DeadlineReached:
                raise WrennCommandTimeoutError(
                    f"durable command {self.tag!r} did not exit within {timeout:g} s",
                    stdout=stdout.text(),
                    stderr=stderr.text(),
                    pid=stream.pid,
                ) from None
        return CommandResult(
            stdout=stdout.text(),
            stderr=stderr.text(),
            exit_code=stream.exit_code if stream.exit_code is not None else -1,
            duration_ms=int((time.monotonic() - started) * 1000),
            stdout_dropped=stdout.dropped + stream.stdout_dropped,
            stderr_dropped=stderr.dropped + stream.stderr_dropped,
        )

    async def exit_code(self) -> int | None:
        """The recorded exit status, or None while the command runs."""
        try:
            data = await self._commands._files.read_bytes(f"{self.spool_dir}/exit")
        except (WrennNotFoundError, WrennAgentError):
            return None
        try:
            return int(data.strip())
        except ValueError:
            return None

    async def kill(self, signal: str = "SIGKILL") -> None:
        """Send SIGKILL (or SIGTERM) to the command itself; its wrapper records the exit."""
        name = {"SIGKILL": "KILL", "SIGTERM": "TERM"}.get(signal)
        if name is None:
            raise ValueError(f"signal must be SIGKILL or SIGTERM, not {signal!r}")
        result = await self._commands.run(
            ["/bin/sh", "-c", KILL_SCRIPT, "sh", name, f"{self.spool_dir}/pid"]
        )
        if result.exit_code != 0 and await self.exit_code() is None:
            raise WrennNotFoundError(
                "not_found", f"cannot signal durable command {self.tag!r}: {result.stderr.strip()}"
            )

    async def remove(self) -> None:
        """Delete the spool (the output and the exit status) from the capsule."""
        await self._commands._files.remove(self.spool_dir)


def check_offset(value: object, name: str) -> int:
    checked = optional_int(value, name)
    if checked is None:
        raise TypeError(f"{name} must be an int")
    return checked
