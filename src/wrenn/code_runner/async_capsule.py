"""The code-runner ``AsyncCapsule`` (also importable from ``wrenn.code_runner``)."""

from __future__ import annotations

from .._async.code_runner import AsyncCapsule
from .._code_runner import DEFAULT_KERNEL, DEFAULT_TEMPLATE

__all__ = ["DEFAULT_KERNEL", "DEFAULT_TEMPLATE", "AsyncCapsule"]
