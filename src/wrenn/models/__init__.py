"""Response and request models (msgspec Structs), under the official SDK's module path."""

from __future__ import annotations

from .._models import *  # noqa: F403
from .._models import __all__ as __all__
