"""The official SDK's generated-models module path (``wrenn.models._generated``).

The official SDK defines its models here and re-exports some from ``wrenn.models``;
ours are defined in ``wrenn._models`` and every name is available from both paths.
"""

from __future__ import annotations

from .._models import *  # noqa: F403
from .._models import __all__ as __all__
