"""Methods callable both on a capsule instance and on the class with a capsule id."""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any, Generic, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class dual_method(Generic[F]):
    """``capsule.destroy()`` and ``Capsule.destroy(capsule_id)`` in one name.

    On an instance the instance function runs; on the class the class-level function
    runs with the class as its first argument, as the official SDK's capsules allow.
    """

    def __init__(self, on_instance: F) -> None:
        self._on_instance = on_instance
        self._on_class: Callable[..., Any] | None = None
        functools.update_wrapper(self, on_instance)  # type: ignore[arg-type]

    def classmethod(self, on_class: Callable[..., Any]) -> dual_method[F]:
        self._on_class = on_class
        return self

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            assert self._on_class is not None
            return types.MethodType(self._on_class, owner)
        return types.MethodType(self._on_instance, instance)
