"""The generator itself: flavour branches, prose for the sync reader, and renames that
would make two names one. ``build_sync.py --check`` (run by CI) covers the real trees;
these tests pin each rule on small sources, including the forms it must refuse.

The generator parses Python with ``ast``, and CPython 3.11's ``ast`` can race a traceback
formatted in a server thread an earlier test left in this process (it failed CI once);
so every call that parses runs in a child process (``in_child``). Only the string rules
(``PROSE.sync_prose``, regular expressions) run here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from textwrap import dedent

import pytest

from tests.test_parity import build_sync

ROOT = Path(__file__).resolve().parents[1]
# A child takes a few seconds at most (a whole `--check` run, the longest); the bound
# only stops a hung child from hanging the suite.
CHILD_TIMEOUT = 120.0

_CHILD = """
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
from sync_generator import GenerationError
call = json.load(sys.stdin)
namespace = {**vars(importlib.import_module(call["module"])), **call["values"]}
try:
    reply = {"result": eval(call["expression"], namespace)}
except GenerationError as exc:
    reply = {"refused": str(exc)}
json.dump(reply, sys.stdout)
"""


class Refused(Exception):
    """The child's generator raised GenerationError (with this message)."""


def in_child(expression: str, module: str = "build_sync", **values: object) -> object:
    """Evaluate ``expression`` among ``module``'s names and ``values`` in a fresh Python
    process and return its (JSON) result; a GenerationError there is Refused here."""
    call = {"expression": expression, "module": module, "values": values}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(ROOT)],
        input=json.dumps(call),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    if "refused" in reply:
        raise Refused(reply["refused"])
    return reply["result"]


def strip(source: str) -> object:
    return in_child(
        "strip_flavour_branches(source, 'x.py')", "sync_generator.branches", source=dedent(source)
    )


# --- flavour branches --------------------------------------------------------------------


def test_if_is_async_keeps_only_the_else_body() -> None:
    out = strip(
        """
        from wrenn._compat import IS_ASYNC

        def f(x):
            if IS_ASYNC:
                raise TypeError("await it")
            else:
                # the blocking side
                y = x + 1
                return y
            return None
        """
    )
    assert out == dedent(
        """
        from wrenn._compat import IS_ASYNC

        def f(x):
            # the blocking side
            y = x + 1
            return y
            return None
        """
    )


def test_if_not_is_async_keeps_the_body_and_drops_the_else() -> None:
    out = strip(
        """
        if not IS_ASYNC:
            a = 1
        else:
            a = 2
        """
    )
    assert out == "\na = 1\n"


def test_an_async_only_member_disappears_from_the_class() -> None:
    out = strip(
        """
        class C:
            def keep(self): ...

            if IS_ASYNC:

                async def close(self): ...
        """
    )
    assert out == "\nclass C:\n    def keep(self): ...\n\n"


def test_nested_branches_are_resolved() -> None:
    out = strip(
        """
        if not IS_ASYNC:
            if IS_ASYNC:
                a = 1
            else:
                a = 2
        """
    )
    assert out == "\na = 2\n"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("flag = IS_ASYNC\n", "only understood"),
        ("if IS_ASYNC and x:\n    pass\n", "only understood"),
        ("y = 1 if IS_ASYNC else 2\n", "only understood"),
        ("if x:\n    pass\nelif IS_ASYNC:\n    pass\n", "own `if` statement"),
        ("if IS_ASYNC:\n    a = 1\nelif x:\n    a = 2\n", "elif"),
        ("if IS_ASYNC: a = 1\n", "own lines"),
        ("def f():\n    if IS_ASYNC:\n        return 1\n", "invalid code"),
    ],
)
def test_forms_the_generator_does_not_understand_fail_loudly(source: str, message: str) -> None:
    with pytest.raises(Refused, match=message):
        in_child("strip_flavour_branches(source, 'x.py')", "sync_generator.branches", source=source)


# --- prose -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Create one with ``await AsyncCapsule.create(...)``.",
            "Create one with ``Capsule.create(...)``.",
        ),
        ("async with await AsyncCapsule.create() as c:", "with Capsule.create() as c:"),
        ("async for event in stream:", "for event in stream:"),
        ("# async def f(): await asleep(1)", "# def f(): sleep(1)"),
        ("call ``aclose()`` or leave ``__aexit__``", "call ``close()`` or leave ``__exit__``"),
        ("returns an ``AsyncDurableCommand``", "returns a ``DurableCommand``"),
        (
            "httpx nests async generators (``aiter_bytes``)",
            "httpx nests generators (``iter_bytes``)",
        ),
        ("an asynchronous iterator of chunks", "an iterator of chunks"),
        ("wrenn._async.capsule", "wrenn._sync.capsule"),
        # Not our API: left alone.
        ("API 0.2.2's asynchronous lifecycle", "API 0.2.2's asynchronous lifecycle"),
        ("awaiting_x, MyAsyncCapsule, AsyncCapsules", "awaiting_x, MyAsyncCapsule, Capsules"),
    ],
)
def test_prose_is_written_for_the_sync_reader(text: str, expected: str) -> None:
    assert build_sync.PROSE.sync_prose(text) == expected


def test_only_docstrings_and_comments_get_the_prose_rules() -> None:
    source = dedent(
        '''
        def f():
            """Use ``await AsyncCapsule.create()``."""  # async with it
            message = "use `await AsyncCapsule.create()` or httpx.AsyncClient"
            return message
        '''
    )
    out = in_child("PROSE.rewrite_strings_and_comments(source)", source=source)
    assert isinstance(out, str)
    assert '"""Use ``Capsule.create()``."""  # with it' in out
    # A message is a value: only names are renamed in it.
    assert 'message = "use `await Capsule.create()` or httpx.Client"' in out


# --- renames that make two names one ------------------------------------------------------

BASE = """
class AsyncBase:
    async def aclose(self) -> None: ...
"""


def collisions(modules: dict[str, str]) -> object:
    return in_child("find_collisions(modules, 'pkg')", modules=modules)


def test_a_rename_that_collides_with_a_base_in_another_module_fails() -> None:
    child = "from . import base as _base\n\nclass AsyncChild(_base.AsyncBase):\n    async def close(self) -> None: ...\n"
    problems = collisions({"base": BASE, "child": child})
    assert problems == [
        "pkg/child.py: class AsyncChild (with its bases in the tree): aclose and close would all become 'close'"
    ]
    imported = "from .base import AsyncBase\n\nclass AsyncChild(AsyncBase):\n    close = None\n"
    assert collisions({"base": BASE, "child": imported})


def test_a_rename_that_collides_in_one_class_or_module_fails() -> None:
    one_class = "class C:\n    async def aclose(self): ...\n    def close(self): ...\n"
    assert collisions({"m": one_class})
    module = "from anyio import sleep\n\nasync def asleep(): ...\n"
    assert collisions({"m": module}) == ["pkg/m.py: asleep and sleep would all become 'sleep'"]


def test_overrides_and_twin_imports_are_not_collisions() -> None:
    child = "from .base import AsyncBase\n\nclass AsyncChild(AsyncBase):\n    async def aclose(self): ...\n"
    twins = "from collections.abc import AsyncIterator, Iterator\n"
    assert collisions({"base": BASE, "child": child, "t": twins}) == []


def test_the_real_sources_have_no_collision() -> None:
    # prepare_sources raises GenerationError (Refused here) on a collision.
    modules = in_child("[sorted(prepare_sources(ROOT, src)) for src, _ in TREES]")
    assert isinstance(modules, list) and len(modules) == len(build_sync.TREES)
    assert all(names for names in modules)


# --- the committed sync trees ---------------------------------------------------------------


def test_the_scan_for_async_spelling_sees_docstrings_and_comments() -> None:
    generated = dedent(
        '''\
        # Generated by build_sync.py from src/wrenn/_async/x.py. Do not edit.
        def f():
            """Use ``await x``."""
            message = "async is fine in a message"  # but not an AsyncCapsule here
            return message
        '''
    )
    found = in_child("PROSE.async_leftovers(generated)", generated=generated)
    assert found == [[3, ["await"]], [4, ["AsyncCapsule"]]]


def test_the_sync_trees_never_tell_the_reader_to_await() -> None:
    problems = in_child(
        "[(f'{dst}/{path.relative_to(ROOT / dst).as_posix()}', line, words)"
        " for _, dst in TREES for path in sorted((ROOT / dst).rglob('*.py'))"
        " for line, words in PROSE.async_leftovers(path.read_text('utf-8'))]"
    )
    assert problems == []


def test_the_sync_trees_carry_no_flavour_switch() -> None:
    for _, dst in build_sync.TREES:
        for path in sorted((ROOT / dst).rglob("*.py")):
            text = path.read_text("utf-8")
            assert "IS_ASYNC" not in text and "Flavor" not in text, path


def _copy_generator_and_trees(target: Path) -> None:
    shutil.copy2(ROOT / "build_sync.py", target)
    shutil.copy2(ROOT / "pyproject.toml", target)  # ruff's configuration for the output
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "sync_generator", target / "sync_generator", ignore=ignore)
    for src, dst in build_sync.TREES:
        shutil.copytree(ROOT / src, target / src, ignore=ignore)
        shutil.copytree(ROOT / dst, target / dst, ignore=ignore)


@pytest.mark.skipif(
    sys.version_info[:2] != build_sync.PINNED_PYTHON,
    reason="build_sync.py runs only on its pinned Python (unasync's output follows the tokenizer)",
)
def test_check_fails_on_a_stale_missing_or_extra_generated_file(tmp_path: Path) -> None:
    _copy_generator_and_trees(tmp_path)
    (src_sync, tests_sync) = (dst for _, dst in build_sync.TREES)
    stale = sorted((tmp_path / src_sync).rglob("*.py"))[0]
    stale.write_text(stale.read_text("utf-8") + "# edited by hand\n", "utf-8")
    missing = sorted((tmp_path / tests_sync).rglob("*.py"))[0]
    missing.unlink()
    (tmp_path / src_sync / "by_hand.py").write_text("x = 1\n", "utf-8")
    stale_run = subprocess.run(
        [sys.executable, "build_sync.py", "--check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    assert stale_run.returncode == 1
    assert f"differs: {stale.relative_to(tmp_path).as_posix()}" in stale_run.stderr
    assert f"missing: {missing.relative_to(tmp_path).as_posix()}" in stale_run.stderr
    assert f"extra (not generated): {src_sync}/by_hand.py" in stale_run.stderr
