"""wrenn: the async-first Python SDK for Wrenn capsules.

Names are imported on first use, so ``import wrenn`` stays cheap for programs that
need only part of the SDK (short-lived workers, CLIs).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._exceptions import __all__ as _exception_names
from ._version import __version__

if TYPE_CHECKING:
    # What type checkers see of the names imported on first use below (``X as X``
    # marks each as exported). tests/test_public_names.py checks these match _HOMES.
    from ._async.capsule import AsyncCapsule as AsyncCapsule
    from ._async.client import AsyncWrennClient as AsyncWrennClient
    from ._async.command_stream import AsyncCommandHandle as AsyncCommandHandle
    from ._async.durable import AsyncDurableCommand as AsyncDurableCommand
    from ._async.durable import AsyncDurableStream as AsyncDurableStream
    from ._async.git import AsyncGit as AsyncGit
    from ._async.pty import AsyncPtySession as AsyncPtySession
    from ._durable import DurableStderrEvent as DurableStderrEvent
    from ._durable import DurableStdoutEvent as DurableStdoutEvent
    from ._durable import StreamDroppedEvent as StreamDroppedEvent
    from ._exceptions import BlockingCallWarning as BlockingCallWarning
    from ._exceptions import GitAuthError as GitAuthError
    from ._exceptions import GitCommandError as GitCommandError
    from ._exceptions import GitError as GitError
    from ._exceptions import InsecureTransportWarning as InsecureTransportWarning
    from ._exceptions import ModelValidationError as ModelValidationError
    from ._exceptions import WrennAgentError as WrennAgentError
    from ._exceptions import WrennAPIStatusError as WrennAPIStatusError
    from ._exceptions import WrennAuthenticationError as WrennAuthenticationError
    from ._exceptions import WrennCapsuleStateError as WrennCapsuleStateError
    from ._exceptions import WrennClientClosedError as WrennClientClosedError
    from ._exceptions import WrennCommandTimeoutError as WrennCommandTimeoutError
    from ._exceptions import WrennConflictError as WrennConflictError
    from ._exceptions import WrennConnectionError as WrennConnectionError
    from ._exceptions import WrennError as WrennError
    from ._exceptions import WrennForbiddenError as WrennForbiddenError
    from ._exceptions import WrennGatewayTimeoutError as WrennGatewayTimeoutError
    from ._exceptions import WrennHostHasCapsulesError as WrennHostHasCapsulesError
    from ._exceptions import WrennHostHasCapsulesError as WrennHostHasSandboxesError
    from ._exceptions import WrennHostUnavailableError as WrennHostUnavailableError
    from ._exceptions import WrennInternalError as WrennInternalError
    from ._exceptions import WrennNotFoundError as WrennNotFoundError
    from ._exceptions import WrennPayloadTooLargeError as WrennPayloadTooLargeError
    from ._exceptions import WrennRateLimitError as WrennRateLimitError
    from ._exceptions import WrennRedirectError as WrennRedirectError
    from ._exceptions import WrennResponseTooLargeError as WrennResponseTooLargeError
    from ._exceptions import WrennResponseValidationError as WrennResponseValidationError
    from ._exceptions import WrennStreamError as WrennStreamError
    from ._exceptions import WrennStreamInterruptedError as WrennStreamInterruptedError
    from ._exceptions import WrennStreamTimeoutError as WrennStreamTimeoutError
    from ._exceptions import WrennTimeoutError as WrennTimeoutError
    from ._exceptions import WrennUsageError as WrennUsageError
    from ._exceptions import WrennValidationError as WrennValidationError
    from ._git import FileStatus as FileStatus
    from ._git import GitBranch as GitBranch
    from ._git import GitStatus as GitStatus
    from ._models_data import FileEntry as FileEntry
    from ._process import CommandResult as CommandResult
    from ._process import ProcessInfo as ProcessInfo
    from ._process import StreamErrorEvent as StreamErrorEvent
    from ._process import StreamEvent as StreamEvent
    from ._process import StreamExitEvent as StreamExitEvent
    from ._process import StreamStartEvent as StreamStartEvent
    from ._process import StreamStderrEvent as StreamStderrEvent
    from ._process import StreamStdoutEvent as StreamStdoutEvent
    from ._pty import PtyEvent as PtyEvent
    from ._pty import PtyEventType as PtyEventType
    from ._reconnect import EventStreamGap as EventStreamGap
    from ._sync.capsule import Capsule as Capsule
    from ._sync.capsule import Capsule as Sandbox  # deprecated alias
    from ._sync.client import WrennClient as WrennClient
    from ._sync.command_stream import CommandHandle as CommandHandle
    from ._sync.durable import DurableCommand as DurableCommand
    from ._sync.durable import DurableStream as DurableStream
    from ._sync.git import Git as Git
    from ._sync.pty import PtySession as PtySession

# The package's public names, each under the module that defines it: the one list.
# ``__all__`` is made from it, and a name is imported from its module on first access.
# Every exception and warning is here: their list is ``wrenn._exceptions.__all__``.
_HOMES: dict[str, tuple[str, ...]] = {
    "wrenn._async.client": ("AsyncWrennClient",),
    "wrenn._sync.client": ("WrennClient",),
    "wrenn._async.capsule": ("AsyncCapsule",),
    "wrenn._sync.capsule": ("Capsule",),
    "wrenn._async.command_stream": ("AsyncCommandHandle",),
    "wrenn._sync.command_stream": ("CommandHandle",),
    "wrenn._async.durable": (
        "AsyncDurableCommand",
        "AsyncDurableStream",
    ),
    "wrenn._sync.durable": (
        "DurableCommand",
        "DurableStream",
    ),
    "wrenn._durable": (
        "DurableStderrEvent",
        "DurableStdoutEvent",
        "StreamDroppedEvent",
    ),
    "wrenn._process": (
        "CommandResult",
        "ProcessInfo",
        "StreamErrorEvent",
        "StreamEvent",
        "StreamExitEvent",
        "StreamStartEvent",
        "StreamStderrEvent",
        "StreamStdoutEvent",
    ),
    "wrenn._async.git": ("AsyncGit",),
    "wrenn._sync.git": ("Git",),
    "wrenn._git": (
        "FileStatus",
        "GitBranch",
        "GitStatus",
    ),
    "wrenn._async.pty": ("AsyncPtySession",),
    "wrenn._sync.pty": ("PtySession",),
    "wrenn._pty": (
        "PtyEvent",
        "PtyEventType",
    ),
    "wrenn._models_data": ("FileEntry",),
    "wrenn._reconnect": ("EventStreamGap",),
    # Every exception and warning: the list is the one in _exceptions (cheap to load).
    "wrenn._exceptions": tuple(_exception_names),
}
# Old names kept working, with a FutureWarning on each access.
_DEPRECATED = {"Sandbox": "Capsule", "WrennHostHasSandboxesError": "WrennHostHasCapsulesError"}

_LAZY: dict[str, str] = {name: module for module, names in _HOMES.items() for name in names}

# The deprecated names are spelled out so that type checkers see them exported.
__all__ = [*_LAZY, "Sandbox", "WrennHostHasSandboxesError", "__version__"]


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
