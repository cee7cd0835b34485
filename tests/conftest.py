"""Shared test configuration.

The async tests run under asyncio AND trio: the backends are pinned here so that a
missing trio fails loudly instead of silently dropping half of the runs.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["anyio"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
