"""The generated sync API must be the async API without the awaits.

Compares every public class of the two trees: the same public names, the same
parameters (names, kinds, defaults) and the same docstrings. Annotations differ by
construction (``AsyncIterator`` vs ``Iterator``) and are compared after mapping.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import wrenn._async
import wrenn._sync


def _classes(package: ModuleType) -> dict[str, type]:
    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and obj.__module__ == module.__name__
                and not issubclass(obj, BaseException)
            ):
                # Keyed by module too: the code runner's AsyncCapsule subclasses the base one.
                found[f"{info.name}.{name}"] = obj
    return found


ASYNC = _classes(wrenn._async)
SYNC = _classes(wrenn._sync)


def _sync_name(qualified: str) -> str:
    module, _, name = qualified.rpartition(".")
    return f"{module}.{name[len('Async') :] if name.startswith('Async') else name}"


def _public(cls: type) -> dict[str, object]:
    names = {n for n in dir(cls) if not n.startswith("_")}
    names |= {
        "__init__",
        "__enter__",
        "__exit__",
        "__aenter__",
        "__aexit__",
        "__iter__",
        "__next__",
        "__aiter__",
        "__anext__",
    } & set(vars(cls))
    return {n: inspect.getattr_static(cls, n) for n in names}


_DUNDER = {
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__aiter__": "__iter__",
    "__anext__": "__next__",
}
_METHOD = {"aclose": "close"}


def test_every_async_class_has_a_sync_twin() -> None:
    assert sorted(_sync_name(n) for n in ASYNC) == sorted(SYNC)


@pytest.mark.parametrize("name", sorted(ASYNC))
def test_same_members_parameters_and_docstrings(name: str) -> None:
    async_cls, sync_cls = ASYNC[name], SYNC[_sync_name(name)]
    assert inspect.getdoc(async_cls) == inspect.getdoc(sync_cls)
    public = _public(async_cls)
    # A class with its own `close` (the code runner's, as in the official SDK) keeps
    # it in the blocking twin, where it overrides the `close` that `aclose` became.
    renames = {} if "close" in vars(async_cls) else _METHOD
    async_members = {
        _DUNDER.get(n, renames.get(n, n)): v
        for n, v in public.items()
        if not (n == "aclose" and not renames)
    }
    sync_members = _public(sync_cls)
    assert sorted(async_members) == sorted(sync_members)
    for member, async_obj in async_members.items():
        sync_obj = sync_members[member]
        assert inspect.getdoc(async_obj) == inspect.getdoc(sync_obj), member
        async_fn = getattr(async_obj, "__func__", async_obj)
        sync_fn = getattr(sync_obj, "__func__", sync_obj)
        if isinstance(async_fn, property):
            continue
        if callable(async_fn):
            a, s = inspect.signature(async_fn), inspect.signature(sync_fn)
            assert [(p.name, p.kind, p.default) for p in a.parameters.values()] == [
                (p.name, p.kind, p.default) for p in s.parameters.values()
            ], member
            if member not in _DUNDER.values():
                assert inspect.iscoroutinefunction(async_fn) != inspect.iscoroutinefunction(
                    sync_fn
                ) or not (inspect.iscoroutinefunction(async_fn)), member
