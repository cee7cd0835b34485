"""The async ``AsyncCapsule``, under the module path the official SDK uses."""

from __future__ import annotations

from ._async.capsule import AsyncCapsule
from ._async.client import AsyncWrennClient
from ._async.commands import AsyncCommands
from ._async.files import AsyncFiles
from ._async.git import AsyncGit
from ._async.pty import AsyncPtySession
from ._models_control import Capsule as CapsuleModel
from ._models_control import Status, Template

__all__ = [
    "AsyncCapsule",
    "AsyncCommands",
    "AsyncFiles",
    "AsyncGit",
    "AsyncPtySession",
    "AsyncWrennClient",
    "CapsuleModel",
    "Status",
    "Template",
]
