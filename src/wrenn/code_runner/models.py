"""The results of ``run_code``: ``Execution``, ``Result``, ``Logs`` and ``ExecutionError``."""

from __future__ import annotations

from .._code_runner import Execution, ExecutionError, Logs, Result

__all__ = ["Execution", "ExecutionError", "Logs", "Result"]
