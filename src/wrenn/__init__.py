"""wrenn: the async-first Python SDK for Wrenn capsules.

Names are imported on first use, so ``import wrenn`` stays cheap for programs that
need only part of the SDK (short-lived workers, CLIs).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from ._async.capsule import AsyncCapsule
    from ._async.client import AsyncWrennClient
    from ._async.commands import AsyncCommandHandle
    from ._async.durable import AsyncDurableCommand, AsyncDurableStream
    from ._async.git import AsyncGit
    from ._async.pty import AsyncPtySession
    from ._compat import BlockingCallWarning
    from ._durable import DurableStderrEvent, DurableStdoutEvent, StreamDroppedEvent
    from ._exceptions import (
        WrennAgentError,
        WrennAPIStatusError,
        WrennAuthenticationError,
        WrennCapsuleStateError,
        WrennClientClosedError,
        WrennCommandTimeoutError,
        WrennConflictError,
        WrennConnectionError,
        WrennError,
        WrennForbiddenError,
        WrennGatewayTimeoutError,
        WrennHostHasCapsulesError,
        WrennHostUnavailableError,
        WrennInternalError,
        WrennNotFoundError,
        WrennPayloadTooLargeError,
        WrennRateLimitError,
        WrennRedirectError,
        WrennResponseTooLargeError,
        WrennResponseValidationError,
        WrennStreamError,
        WrennStreamInterruptedError,
        WrennStreamTimeoutError,
        WrennTimeoutError,
        WrennUsageError,
        WrennValidationError,
    )
    from ._exceptions import WrennHostHasCapsulesError as WrennHostHasSandboxesError
    from ._git import FileStatus, GitAuthError, GitBranch, GitCommandError, GitError, GitStatus
    from ._models import FileEntry
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
    from ._pty import PtyEvent, PtyEventType
    from ._reconnect import EventStreamGap
    from ._sync.capsule import Capsule
    from ._sync.capsule import Capsule as Sandbox  # deprecated alias
    from ._sync.client import WrennClient
    from ._sync.commands import CommandHandle
    from ._sync.durable import DurableCommand, DurableStream
    from ._sync.git import Git
    from ._sync.pty import PtySession

__all__ = [
    "AsyncCapsule",
    "AsyncCommandHandle",
    "AsyncDurableCommand",
    "AsyncDurableStream",
    "AsyncGit",
    "AsyncPtySession",
    "AsyncWrennClient",
    "BlockingCallWarning",
    "Capsule",
    "CommandHandle",
    "CommandResult",
    "DurableCommand",
    "DurableStderrEvent",
    "DurableStdoutEvent",
    "DurableStream",
    "EventStreamGap",
    "FileEntry",
    "FileStatus",
    "Git",
    "GitAuthError",
    "GitBranch",
    "GitCommandError",
    "GitError",
    "GitStatus",
    "ProcessInfo",
    "PtyEvent",
    "PtyEventType",
    "PtySession",
    "Sandbox",  # deprecated alias of Capsule (FutureWarning on access), as in the official SDK
    "StreamDroppedEvent",
    "StreamErrorEvent",
    "StreamEvent",
    "StreamExitEvent",
    "StreamStartEvent",
    "StreamStderrEvent",
    "StreamStdoutEvent",
    "WrennAPIStatusError",
    "WrennAgentError",
    "WrennAuthenticationError",
    "WrennCapsuleStateError",
    "WrennClient",
    "WrennClientClosedError",
    "WrennCommandTimeoutError",
    "WrennConflictError",
    "WrennConnectionError",
    "WrennError",
    "WrennForbiddenError",
    "WrennGatewayTimeoutError",
    "WrennHostHasCapsulesError",
    "WrennHostHasSandboxesError",  # deprecated alias (FutureWarning on access)
    "WrennHostUnavailableError",
    "WrennInternalError",
    "WrennNotFoundError",
    "WrennPayloadTooLargeError",
    "WrennRateLimitError",
    "WrennRedirectError",
    "WrennResponseTooLargeError",
    "WrennResponseValidationError",
    "WrennStreamError",
    "WrennStreamInterruptedError",
    "WrennStreamTimeoutError",
    "WrennTimeoutError",
    "WrennUsageError",
    "WrennValidationError",
    "__version__",
]

# name -> module that defines it; imported on first access
_LAZY: dict[str, str] = {
    "AsyncWrennClient": "wrenn._async.client",
    "WrennClient": "wrenn._sync.client",
    "AsyncCapsule": "wrenn._async.capsule",
    "Capsule": "wrenn._sync.capsule",
    "AsyncCommandHandle": "wrenn._async.commands",
    "CommandHandle": "wrenn._sync.commands",
    "AsyncDurableCommand": "wrenn._async.durable",
    "AsyncDurableStream": "wrenn._async.durable",
    "DurableCommand": "wrenn._sync.durable",
    "DurableStream": "wrenn._sync.durable",
    "DurableStdoutEvent": "wrenn._durable",
    "DurableStderrEvent": "wrenn._durable",
    "StreamDroppedEvent": "wrenn._durable",
    "EventStreamGap": "wrenn._reconnect",
    "AsyncPtySession": "wrenn._async.pty",
    "PtySession": "wrenn._sync.pty",
    "PtyEvent": "wrenn._pty",
    "BlockingCallWarning": "wrenn._compat",
    "PtyEventType": "wrenn._pty",
    "FileEntry": "wrenn._models",
    "AsyncGit": "wrenn._async.git",
    "Git": "wrenn._sync.git",
    **{
        name: "wrenn._git"
        for name in (
            "FileStatus",
            "GitAuthError",
            "GitBranch",
            "GitCommandError",
            "GitError",
            "GitStatus",
        )
    },
    **{
        name: "wrenn._process"
        for name in (
            "CommandResult",
            "ProcessInfo",
            "StreamErrorEvent",
            "StreamEvent",
            "StreamExitEvent",
            "StreamStartEvent",
            "StreamStderrEvent",
            "StreamStdoutEvent",
        )
    },
    **{
        name: "wrenn._exceptions"
        for name in __all__
        if name.startswith("Wrenn") and name.endswith("Error") and "Sandboxes" not in name
    },
}


_DEPRECATED = {"Sandbox": "Capsule", "WrennHostHasSandboxesError": "WrennHostHasCapsulesError"}


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:
        import warnings

        new = _DEPRECATED[name]
        warnings.warn(f"wrenn.{name} is deprecated; use wrenn.{new}", FutureWarning, stacklevel=2)
        return __getattr__(new)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wrenn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
