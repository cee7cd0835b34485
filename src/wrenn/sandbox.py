"""Deprecated module kept for code written against older SDKs; use ``wrenn`` directly."""

from __future__ import annotations

import warnings
from typing import Any

from ._process import (
    StreamErrorEvent,
    StreamEvent,
    StreamExitEvent,
    StreamStartEvent,
    StreamStderrEvent,
    StreamStdoutEvent,
)
from ._sync.capsule import Capsule

__all__ = [
    "Capsule",
    "StreamErrorEvent",
    "StreamEvent",
    "StreamExitEvent",
    "StreamStartEvent",
    "StreamStderrEvent",
    "StreamStdoutEvent",
]


def __getattr__(name: str) -> Any:
    if name == "Sandbox":
        warnings.warn(
            "wrenn.sandbox.Sandbox is deprecated; use wrenn.Capsule", FutureWarning, stacklevel=2
        )
        return Capsule
    raise AttributeError(f"module 'wrenn.sandbox' has no attribute {name!r}")
