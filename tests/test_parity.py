"""The generated sync API must be the async API without the awaits.

Compares every public class of the two trees: the same public names, the same
parameters (names, kinds, defaults) and the same docstrings once the async spelling is
mapped to the sync one (``await x`` -> ``x``, ``AsyncCapsule`` -> ``Capsule``...), the
mapping build_sync.py applies. No sync docstring may still speak of the async API.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

import wrenn._async
import wrenn._sync


def _build_sync() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "build_sync.py"
    spec = importlib.util.spec_from_file_location("build_sync", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_sync", module)
    spec.loader.exec_module(module)
    return module


build_sync = _build_sync()


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
# Members defined under ``if IS_ASYNC:``, which the sync twin does not have.
_ASYNC_ONLY = {"code_runner.AsyncCapsule": {"close"}}


def _sync_doc(obj: object) -> str | None:
    doc = inspect.getdoc(obj)
    return None if doc is None else build_sync.PROSE.sync_prose(doc)


def _check_sync_doc(obj: object, where: str) -> None:
    doc = inspect.getdoc(obj) or ""
    assert build_sync.PROSE.async_spelling(doc) == [], f"{where}: {doc!r}"


def test_every_async_class_has_a_sync_twin() -> None:
    assert sorted(_sync_name(n) for n in ASYNC) == sorted(SYNC)


@pytest.mark.parametrize("name", sorted(ASYNC))
def test_same_members_parameters_and_docstrings(name: str) -> None:
    async_cls, sync_cls = ASYNC[name], SYNC[_sync_name(name)]
    assert _sync_doc(async_cls) == inspect.getdoc(sync_cls)
    _check_sync_doc(sync_cls, name)
    async_only = _ASYNC_ONLY.get(name, set())
    assert async_only <= set(vars(async_cls)), "stale _ASYNC_ONLY entry"
    public = _public(async_cls)
    async_members = {
        _DUNDER.get(n, _METHOD.get(n, n)): v for n, v in public.items() if n not in async_only
    }
    sync_members = _public(sync_cls)
    assert sorted(async_members) == sorted(sync_members)
    for member, async_obj in async_members.items():
        sync_obj = sync_members[member]
        assert _sync_doc(async_obj) == inspect.getdoc(sync_obj), member
        _check_sync_doc(sync_obj, f"{name}.{member}")
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
