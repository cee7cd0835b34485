"""The blocking ``Capsule``, under the module path the official SDK uses."""

from __future__ import annotations

from ._models_control import Capsule as CapsuleModel
from ._models_control import Status, Template
from ._sync.capsule import Capsule
from ._sync.client import WrennClient
from ._sync.commands import Commands
from ._sync.files import Files
from ._sync.git import Git
from ._sync.pty import PtySession

__all__ = [
    "Capsule",
    "CapsuleModel",
    "Commands",
    "Files",
    "Git",
    "PtySession",
    "Status",
    "Template",
    "WrennClient",
]
