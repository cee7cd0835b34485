"""Deprecated alias of ``wrenn.code_runner.async_capsule`` (importing ``wrenn.code_interpreter`` warns)."""

from __future__ import annotations

from ..code_runner.async_capsule import AsyncCapsule

__all__ = ["AsyncCapsule"]
