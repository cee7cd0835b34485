"""The blocking code-runner ``Capsule`` (also importable from ``wrenn.code_runner``)."""

from __future__ import annotations

from .._code_runner import DEFAULT_KERNEL, DEFAULT_TEMPLATE
from .._sync.code_runner import Capsule

__all__ = ["DEFAULT_KERNEL", "DEFAULT_TEMPLATE", "Capsule"]
