"""Deprecated alias of ``wrenn.code_runner.models`` (importing ``wrenn.code_interpreter`` warns)."""

from __future__ import annotations

from ..code_runner.models import Execution, ExecutionError, Logs, Result

__all__ = ["Execution", "ExecutionError", "Logs", "Result"]
