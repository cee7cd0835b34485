"""The generator itself: flavour branches, prose for the sync reader, and renames that
would make two names one. ``build_sync.py --check`` (run by CI) covers the real trees;
these tests pin each rule on small sources, including the forms it must refuse."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path
from textwrap import dedent

import pytest

from tests.test_parity import build_sync

ROOT = Path(__file__).resolve().parents[1]
GenerationError = build_sync.GenerationError


def strip(source: str) -> str:
    return build_sync.strip_flavour_branches(dedent(source), "x.py")


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
    tree = ast.parse(out)
    assert [n.name for n in tree.body[0].body] == ["keep"]  # type: ignore[attr-defined]


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
    with pytest.raises(GenerationError, match=message):
        build_sync.strip_flavour_branches(source, "x.py")


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
    assert build_sync.sync_prose(text) == expected


def test_only_docstrings_and_comments_get_the_prose_rules() -> None:
    source = dedent(
        '''
        def f():
            """Use ``await AsyncCapsule.create()``."""  # async with it
            message = "use `await AsyncCapsule.create()` or httpx.AsyncClient"
            return message
        '''
    )
    out = build_sync.rewrite_strings_and_comments(source)
    assert '"""Use ``Capsule.create()``."""  # with it' in out
    # A message is a value: only names are renamed in it.
    assert 'message = "use `await Capsule.create()` or httpx.Client"' in out


# --- renames that make two names one ------------------------------------------------------

BASE = """
class AsyncBase:
    async def aclose(self) -> None: ...
"""


def test_a_rename_that_collides_with_a_base_in_another_module_fails() -> None:
    child = "from . import base as _base\n\nclass AsyncChild(_base.AsyncBase):\n    async def close(self) -> None: ...\n"
    problems = build_sync.check_collisions({"base": BASE, "child": child}, "pkg")
    assert problems == [
        "pkg/child.py: class AsyncChild (with its bases in the tree): aclose and close would all become 'close'"
    ]
    imported = "from .base import AsyncBase\n\nclass AsyncChild(AsyncBase):\n    close = None\n"
    assert build_sync.check_collisions({"base": BASE, "child": imported}, "pkg")


def test_a_rename_that_collides_in_one_class_or_module_fails() -> None:
    one_class = "class C:\n    async def aclose(self): ...\n    def close(self): ...\n"
    assert build_sync.check_collisions({"m": one_class}, "pkg")
    module = "from anyio import sleep\n\nasync def asleep(): ...\n"
    assert build_sync.check_collisions({"m": module}, "pkg") == [
        "pkg/m.py: asleep and sleep would all become 'sleep'"
    ]


def test_overrides_and_twin_imports_are_not_collisions() -> None:
    child = "from .base import AsyncBase\n\nclass AsyncChild(AsyncBase):\n    async def aclose(self): ...\n"
    twins = "from collections.abc import AsyncIterator, Iterator\n"
    assert build_sync.check_collisions({"base": BASE, "child": child, "t": twins}, "pkg") == []


def test_the_real_sources_have_no_collision() -> None:
    for src, _ in build_sync.TREES:
        build_sync.prepare_sources(ROOT, src)  # raises GenerationError on a collision


# --- the committed sync trees ---------------------------------------------------------------


def _prose(path: Path) -> list[tuple[int, str]]:
    """Docstrings and comments of a generated file, without its header line."""
    text = path.read_text("utf-8")
    docstrings = [
        ((node.lineno, node.col_offset), (node.end_lineno, node.end_col_offset))
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    ]
    found = []
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.start[0] == 1:
            continue
        if token.type == tokenize.COMMENT or (
            token.type == tokenize.STRING
            and any(start <= token.start and token.end <= end for start, end in docstrings)
        ):
            found.append((token.start[0], token.string))
    return found


def test_the_sync_trees_never_tell_the_reader_to_await() -> None:
    problems = []
    for _, dst in build_sync.TREES:
        for path in sorted((ROOT / dst).rglob("*.py")):
            for line, text in _prose(path):
                words = build_sync.async_spelling(text)
                if words:
                    problems.append(f"{path.relative_to(ROOT)}:{line}: {words}")
    assert problems == []


def test_the_sync_trees_carry_no_flavour_switch() -> None:
    for _, dst in build_sync.TREES:
        for path in sorted((ROOT / dst).rglob("*.py")):
            text = path.read_text("utf-8")
            assert "IS_ASYNC" not in text and "Flavor" not in text, path
