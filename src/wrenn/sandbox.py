"""Deprecated module kept for code written against older SDKs; use ``wrenn`` directly."""

from __future__ import annotations

from typing import Any

from ._deprecation import deprecated_alias
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
        return deprecated_alias("wrenn.sandbox.Sandbox", "wrenn.Capsule", Capsule)
    raise AttributeError(f"module 'wrenn.sandbox' has no attribute {name!r}")
