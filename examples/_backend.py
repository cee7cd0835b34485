"""Where the examples run: the platform when WRENN_API_KEY is set, else an embedded local server."""

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
    with LocalServer() as server:
        print(f"started a local Wrenn server at {server.base_url} (isolation: {server.isolation})")
        yield {"api_key": server.api_key, "base_url": server.base_url}
