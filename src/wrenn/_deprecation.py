"""One way to keep an old name working while saying it is going away."""

from __future__ import annotations

import warnings
from typing import TypeVar

T = TypeVar("T")


def deprecated_alias(old: str, new: str, value: T) -> T:
    """Warn (``FutureWarning``, pointing at the caller's import) that ``old`` is now ``new``."""
    # stacklevel 3: past this helper and the module __getattr__ that calls it.
    warnings.warn(f"{old} is deprecated; use {new}", FutureWarning, stacklevel=3)
    return value
