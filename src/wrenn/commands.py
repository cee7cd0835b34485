"""Commands and their results and events, under the module path the official SDK uses."""

from __future__ import annotations

from ._async.commands import AsyncCommandHandle, AsyncCommands, AsyncCommandStream
from ._process import (
    CommandResult,
    ProcessInfo,
    StreamErrorEvent,
    StreamEvent,
    StreamExitEvent,
    StreamStartEvent,
    StreamStderrEvent,
    StreamStdoutEvent,
)
from ._sync.commands import CommandHandle, Commands, CommandStream

__all__ = [
    "AsyncCommandHandle",
    "AsyncCommandStream",
    "AsyncCommands",
    "CommandHandle",
    "CommandResult",
    "CommandStream",
    "Commands",
    "ProcessInfo",
    "StreamErrorEvent",
    "StreamEvent",
    "StreamExitEvent",
    "StreamStartEvent",
    "StreamStderrEvent",
    "StreamStdoutEvent",
]
