"""The ``inspect_ai`` entry point: registers the ``wrenn`` sandbox provider with Inspect.

Inspect imports every ``inspect_ai`` entry point when it looks a provider up; this
module only imports the provider (whose ``@sandboxenv`` decorator registers it), and
does nothing where inspect-ai is not installed.
"""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("inspect_ai") is not None:
    from . import inspect as _provider  # noqa: F401
