"""The shape every stream of the SDK shares: opened lazily, iterated directly, closed on exit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import TypeVar

import httpx

from ._body import finish_iterator

S = TypeVar("S", bound="AsyncLazyStream")


class AsyncLazyStream:
    """Opens on ``async with`` entry or at the first read; leaving the block closes it.

    Subclasses set ``_finished`` and provide ``_is_open``, ``_open`` and ``aclose``.
    """

    _finished: bool

    def _is_open(self) -> bool:
        raise NotImplementedError

    async def _open(self) -> object:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Close the connection; iteration then stops. Safe to call more than once."""
        raise NotImplementedError

    async def __aenter__(self: S) -> S:
        if not self._is_open() and not self._finished:
            await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self: S) -> S:
        return self


class AsyncResponseStream(AsyncLazyStream):
    """A stream over one streamed HTTP response body."""

    _response: httpx.Response | None
    _chunks: AsyncIterator[bytes] | None

    def _is_open(self) -> bool:
        return self._response is not None

    async def aclose(self) -> None:
        """Close the connection; iteration then stops. Safe to call more than once."""
        self._finished = True
        response, self._response = self._response, None
        chunks, self._chunks = self._chunks, None
        if response is not None:
            await response.aclose()
        if chunks is not None:
            await finish_iterator(chunks)
