"""Output of capsule processes: the bounded buffer of a foreground exec and the
queue of a streaming consumer.  Both work on any backend's ``CapsuleProcess``.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from ._runtime import CapsuleProcess

# A foreground REST exec keeps at most this much stdout+stderr in memory; past it
# the command is killed and the exec fails (stream or background it instead).
MAX_EXEC_OUTPUT = 16 * 1024 * 1024
# A streaming consumer (WebSocket) may fall this far behind before the process's
# output stops being read, which blocks the process on its next write.
STREAM_HIGH_WATER = 1024 * 1024


class OutputBuffer:
    """stdout and stderr of one foreground exec, bounded in memory.

    Past ``limit`` bytes in all, the process tree is killed, reading stops and
    ``overflowed`` is set: the caller answers with an error instead of holding an
    unbounded buffer (1 GB of output once took the server to 3.85 GiB).
    """

    def __init__(self, proc: CapsuleProcess, limit: int = MAX_EXEC_OUTPUT) -> None:
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.limit = limit
        self.overflowed = False
        self._proc = proc
        self._task: asyncio.Task[None] | None = None
        proc.listen(self._collect)

    def _collect(self, kind: str, data: bytes) -> None:
        if self.overflowed or kind not in ("stdout", "stderr"):
            return
        buf = self.stdout if kind == "stdout" else self.stderr
        room = self.limit - len(self.stdout) - len(self.stderr)
        buf.extend(data[: max(room, 0)])
        if len(data) > room:
            self.overflowed = True
            self._proc.hold_output()
            self._task = asyncio.get_running_loop().create_task(
                self._proc.send_signal(signal.SIGKILL)
            )

    @property
    def message(self) -> str:
        return (
            f"exec: output exceeds {self.limit // (1024 * 1024)} MB limit, command killed "
            "(use a background exec or exec/stream for large output)"
        )


class FlowQueue:
    """Output queued for one streaming consumer, pushing back on its producer.

    ``put`` is the listener.  Once a producer is attached (its hold/release
    pair), past ``high`` queued bytes it is held, and released once the consumer
    has drained half of that.  Call ``close()`` when the consumer goes away, or
    the producer stays held.
    """

    def __init__(self, high: int = STREAM_HIGH_WATER) -> None:
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._hold: Callable[[], None] | None = None
        self._release: Callable[[], None] | None = None
        self._high = high
        self._bytes = 0
        self._held = False
        self._closed = False

    def attach(self, hold: Callable[[], None], release: Callable[[], None]) -> None:
        """Bind the producer (a listener may be registered before it exists)."""
        self._hold, self._release = hold, release
        self._check()

    def attach_process(self, proc: CapsuleProcess) -> None:
        self.attach(proc.hold_output, proc.release_output)

    def _check(self) -> None:
        if self._bytes > self._high and not self._held and not self._closed and self._hold:
            self._held = True
            self._hold()

    def put(self, kind: str, data: bytes) -> None:
        self._queue.put_nowait((kind, data))
        self._bytes += len(data)
        self._check()

    def put_nowait(self, item: tuple[str, bytes]) -> None:
        self.put(*item)

    async def get(self) -> tuple[str, bytes]:
        item = await self._queue.get()
        self._bytes -= len(item[1])
        if self._held and self._bytes <= self._high // 2:
            self._held = False
            assert self._release is not None
            self._release()
        return item

    def close(self) -> None:
        self._closed = True
        if self._held:
            self._held = False
            assert self._release is not None
            self._release()
