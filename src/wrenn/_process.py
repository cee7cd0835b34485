"""Plain data types of the command API, shared by both clients, and the output buffer."""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from ._constants import DEFAULT_OUTPUT_BUDGET

__all__ = [
    "CommandResult",
    "OutputBuffer",
    "ProcessInfo",
    "StreamErrorEvent",
    "StreamEvent",
    "StreamExitEvent",
    "StreamStartEvent",
    "StreamStderrEvent",
    "StreamStdoutEvent",
]


@dataclasses.dataclass
class CommandResult:
    """The outcome of a finished command.

    ``exit_code`` is never 0 for a command that a signal ended. When a stream produced
    more than the output budget, its middle is dropped: ``stdout_dropped`` /
    ``stderr_dropped`` count the characters left out.
    """

    stdout: str
    stderr: str
    exit_code: int
    duration_ms: int | None = None
    stdout_dropped: int = 0
    stderr_dropped: int = 0


@dataclasses.dataclass
class ProcessInfo:
    """A process the capsule's agent tracks (background commands and terminals)."""

    pid: int
    tag: str | None = None
    cmd: str | None = None
    args: list[str] | None = None


class StreamEvent:
    """One event of a command's output stream; ``type`` names the kind."""

    __slots__ = ("type",)

    def __init__(self, type: str) -> None:
        self.type = type

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __repr__(self) -> str:
        values = ", ".join(
            f"{name}={getattr(self, name)!r}" for name in self.__slots__ if name != "type"
        )
        return f"{type(self).__name__}({values})" if values else f"StreamEvent(type={self.type!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, StreamEvent)
            and type(other) is type(self)
            and self._fields() == other._fields()
        )

    __hash__ = None  # type: ignore[assignment]


class StreamStartEvent(StreamEvent):
    __slots__ = ("pid",)

    def __init__(self, pid: int | None = None) -> None:
        super().__init__("start")
        self.pid = pid


class StreamStdoutEvent(StreamEvent):
    __slots__ = ("data",)

    def __init__(self, data: str = "") -> None:
        super().__init__("stdout")
        self.data = data


class StreamStderrEvent(StreamEvent):
    __slots__ = ("data",)

    def __init__(self, data: str = "") -> None:
        super().__init__("stderr")
        self.data = data


class StreamExitEvent(StreamEvent):
    __slots__ = ("exit_code",)

    def __init__(self, exit_code: int = -1) -> None:
        super().__init__("exit")
        self.exit_code = exit_code


class StreamErrorEvent(StreamEvent):
    __slots__ = ("data",)

    def __init__(self, data: str = "") -> None:
        super().__init__("error")
        self.data = data


def parse_stream_frame(frame: Mapping[str, Any]) -> StreamEvent:
    """Turn one JSON frame of an exec or process stream into a typed event."""
    kind = frame.get("type")
    if kind == "start":
        pid = frame.get("pid")
        return StreamStartEvent(pid if isinstance(pid, int) else None)
    if kind == "stdout":
        return StreamStdoutEvent(str(frame.get("data") or ""))
    if kind == "stderr":
        return StreamStderrEvent(str(frame.get("data") or ""))
    if kind == "exit":
        code = frame.get("exit_code")
        return StreamExitEvent(code if isinstance(code, int) and not isinstance(code, bool) else -1)
    if kind == "error":
        return StreamErrorEvent(str(frame.get("data") or ""))
    return StreamEvent(str(kind))


class OutputBuffer:
    """Keeps the head and the tail of a stream within a budget and counts what it drops."""

    def __init__(self, budget: int = DEFAULT_OUTPUT_BUDGET) -> None:
        self._half = max(budget // 2, 1)
        self._head: list[str] = []
        self._head_size = 0
        self._tail: list[str] = []
        self._tail_size = 0
        self.dropped = 0

    def append(self, text: str) -> None:
        if self._head_size < self._half:
            room = self._half - self._head_size
            self._head.append(text[:room])
            self._head_size += min(len(text), room)
            text = text[room:]
            if not text:
                return
        self._tail.append(text)
        self._tail_size += len(text)
        if self._tail_size > 2 * self._half:  # compact only now and then
            joined = "".join(self._tail)
            self.dropped += len(joined) - self._half
            self._tail = [joined[-self._half :]]
            self._tail_size = self._half

    def text(self) -> str:
        tail = "".join(self._tail)
        if len(tail) > self._half:
            self.dropped += len(tail) - self._half
            tail = tail[-self._half :]
            self._tail, self._tail_size = [tail], len(tail)
        head = "".join(self._head)
        if self.dropped:
            return f"{head}\n[... {self.dropped} characters dropped ...]\n{tail}"
        return head + tail


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def shell_argv(
    cmd: str | Sequence[str], *, envs: Mapping[str, str] | None, cwd: str | None
) -> tuple[str, list[str]]:
    """The ``(cmd, args)`` that run ``cmd`` with ``envs`` and ``cwd`` on any server.

    A string runs through ``/bin/sh -c`` as in the official SDK; a sequence runs as argv
    with no shell parsing. Environment and working directory are applied by a small
    shell prologue, so they hold even on servers that ignore the ``envs``/``cwd`` fields.
    """
    prologue = []
    if cwd is not None:
        prologue.append(f"cd -- {shlex.quote(cwd)} || exit 126")
    for name, value in (envs or {}).items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"invalid environment variable name {name!r}")
        prologue.append(f"export {name}={shlex.quote(value)}")
    if isinstance(cmd, str):
        if not cmd.strip():
            raise ValueError("cmd may not be empty")
        return "/bin/sh", ["-c", "\n".join([*prologue, cmd])]
    argv = list(cmd)
    if not argv or not all(isinstance(part, str) for part in argv):
        raise TypeError("cmd must be a non-empty string or a non-empty sequence of strings")
    if not prologue:
        return argv[0], argv[1:]
    return "/bin/sh", ["-c", "\n".join([*prologue, 'exec "$@"']), "sh", *argv]
