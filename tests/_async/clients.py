"""Client factories shared by the hand-written tests and their generated twins."""

from __future__ import annotations

from tests.reliability.fixtures import KEY
from wrenn import AsyncWrennClient


def client_for(url: str, **options: object) -> AsyncWrennClient:
    """A client pointed at one fault-server scenario URL."""
    return AsyncWrennClient(api_key=KEY, base_url=url, **options)  # type: ignore[arg-type]
