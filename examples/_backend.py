"""Where the examples run: the platform when WRENN_API_KEY is set, else an embedded local server.

WRENN_LOCAL_ISOLATION picks the local server's backend (default "auto"; "microvm" makes
every capsule a QEMU guest, see src/wrenn/local/README.md).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from wrenn.local import LocalServer


@contextlib.contextmanager
def backend() -> Iterator[dict[str, str]]:
    """Yield the keyword arguments (api_key, base_url) that point a client at a Wrenn API."""
    if os.environ.get("WRENN_API_KEY"):
        yield {}
        return
    with LocalServer(isolation=os.environ.get("WRENN_LOCAL_ISOLATION", "auto")) as server:
        print(f"started a local Wrenn server at {server.base_url} (isolation: {server.isolation})")
        yield {"api_key": server.api_key, "base_url": server.base_url}
