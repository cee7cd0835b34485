"""Run code in a persistent Jupyter kernel inside a capsule.

```python
from wrenn.code_runner import Capsule

with Capsule(wait=True) as capsule:
    execution = capsule.run_code("x = 21\nx * 2")
    print(execution.text)  # "42"
```

``Capsule`` blocks; ``AsyncCapsule`` is the same API for asyncio and trio.
"""

from __future__ import annotations

from typing import Any

from .._async.code_runner import AsyncCapsule
from .._code_runner import DEFAULT_KERNEL, DEFAULT_TEMPLATE
from .._deprecation import deprecated_alias
from .._sync.code_runner import Capsule
from .models import Execution, ExecutionError, Logs, Result

__all__ = [
    "DEFAULT_KERNEL",
    "DEFAULT_TEMPLATE",
    "AsyncCapsule",
    "Capsule",
    "Execution",
    "ExecutionError",
    "Logs",
    "Result",
    "Sandbox",
]


def __getattr__(name: str) -> Any:
    if name == "Sandbox":
        return deprecated_alias("wrenn.code_runner.Sandbox", "wrenn.code_runner.Capsule", Capsule)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
