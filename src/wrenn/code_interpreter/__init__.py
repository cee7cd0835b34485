"""Deprecated: the old name of :mod:`wrenn.code_runner`, kept so existing imports work.

Importing it warns once (``FutureWarning``); every name comes from ``wrenn.code_runner``.
"""

from __future__ import annotations

import warnings
from typing import Any

from .._deprecation import deprecated_alias
from ..code_runner import AsyncCapsule, Capsule, Execution, ExecutionError, Logs, Result

warnings.warn(
    "wrenn.code_interpreter is deprecated; use wrenn.code_runner", FutureWarning, stacklevel=2
)

__all__ = ["AsyncCapsule", "Capsule", "Execution", "ExecutionError", "Logs", "Result", "Sandbox"]


def __getattr__(name: str) -> Any:
    if name == "Sandbox":
        return deprecated_alias(
            "wrenn.code_interpreter.Sandbox", "wrenn.code_runner.Capsule", Capsule
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
