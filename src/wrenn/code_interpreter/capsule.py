"""Deprecated alias of ``wrenn.code_runner.capsule`` (importing ``wrenn.code_interpreter`` warns)."""

from __future__ import annotations

from ..code_runner.capsule import Capsule

__all__ = ["Capsule"]
