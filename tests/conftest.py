"""Shared test configuration.

The async tests run under asyncio AND trio: the backends are pinned here so that a
missing trio fails loudly instead of silently dropping half of the runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from wrenn.local import LocalServer

pytest_plugins = ["anyio"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def local_server() -> Iterator[LocalServer]:
    """One embedded Wrenn server for the session's end-to-end tests, always stopped.

    ``WRENN_TEST_ISOLATION`` picks its backend (default ``auto``): the CI runs a
    subset of the suite again with ``microvm``."""
    with LocalServer(isolation=os.environ.get("WRENN_TEST_ISOLATION", "auto")) as server:
        yield server


@pytest.fixture(scope="session")
def slow_local_server() -> Iterator[LocalServer]:
    """An embedded server whose transitions take realistic time (each transitional status
    lasts half a second), so the SDK's waiting is exercised, not bypassed."""
    with LocalServer(transition_delay=0.5) as server:
        yield server
