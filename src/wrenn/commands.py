"""Commands and their results and events, under the module path the official SDK uses."""

from __future__ import annotations

from ._async.command_stream import AsyncCommandHandle, AsyncCommandStream
from ._async.commands import AsyncCommands
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
from ._sync.command_stream import CommandHandle, CommandStream
from ._sync.commands import Commands

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
