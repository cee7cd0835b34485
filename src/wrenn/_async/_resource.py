"""Base of the resource objects hanging off a client (``client.capsules``, ...)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .client import AsyncWrennClient


class AsyncAPIResource:
    """Gives a resource its client's requester and options.

    The options are read at call time, so a resource of a ``with_options()`` copy sends
    with the copy's settings through the shared connection pool.
    """

    def __init__(self, client: AsyncWrennClient) -> None:
        self._client = client
        self._requester = client._requester

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._client!r}>"
