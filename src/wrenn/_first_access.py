"""``on_first_access``: an attribute built, and its module imported, when first read.

The clients hang their resources (``client.capsules``, ``client.events``...) off this,
so importing a client class loads none of the resources' modules (event streams,
lifecycle waits, models): ``import wrenn; wrenn.WrennClient`` stays cheap for a
short-lived program, and each resource's code loads on its first use.

Unlike ``functools.cached_property`` on Python 3.11, no lock is held while the value is
built: building imports a module, and a lock held across an import could deadlock with
the import lock of another thread. Two threads reading the attribute first at once may
both build it; ``dict.setdefault`` keeps the first value stored and both get that one,
so the builders must be cheap and free of side effects (a resource wrapping its client).
Once stored, the value sits in the instance's ``__dict__``, where attribute lookup finds
it before this (non-data) descriptor: later reads cost what a plain attribute costs, and
assigning the attribute replaces the value, as it did when ``__init__`` set it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

_T = TypeVar("_T")


class on_first_access(Generic[_T]):  # lower case: a decorator, like cached_property
    """Decorates a method of one argument (the instance) that builds the attribute."""

    def __init__(self, build: Callable[[Any], _T]) -> None:
        self._build = build
        self._name = build.__name__
        self.__doc__ = build.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> on_first_access[_T]: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> _T: ...

    def __get__(self, instance: object | None, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = self._build(instance)
        return instance.__dict__.setdefault(self._name, value)
