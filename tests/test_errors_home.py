"""Every exception and warning class of the SDK is defined in ``wrenn._exceptions``.

Other modules import them from there (and may keep exporting them under their old
paths); only a private control-flow exception (a leading underscore) may live with the
one module that uses it. The scan reads tokens, not an ``ast`` (see
tests/test_netbackend_internals.py for why). ``wrenn.local``, the embedded server, has
errors of its own, and the generated ``_sync`` tree mirrors ``_async``.
"""

from __future__ import annotations

import importlib
import io
import re
import tokenize
from pathlib import Path

import wrenn.exceptions

SRC = Path(__file__).resolve().parent.parent / "src" / "wrenn"
HOME = "_exceptions.py"
NOT_SCANNED = {"local", "_sync"}
# Classes whose name ends like an error's but which are no exceptions.
NOT_EXCEPTIONS = {
    ("_code_runner.py", "ExecutionError"): "a cell's error record (the official SDK's name)",
    ("_models_base.py", "Error"): "the API's error body, a model",
}
ERROR_NAME = re.compile(r"\w*(Error|Warning|Exception)")


def error_classes(text: str) -> list[str]:
    """Public classes named like an error, or deriving from a name like one."""
    found: list[str] = []
    tokens = [
        t
        for t in tokenize.generate_tokens(io.StringIO(text).readline)
        if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE)
    ]
    for i, token in enumerate(tokens[:-1]):
        if token.type != tokenize.NAME or token.string != "class":
            continue
        name = tokens[i + 1].string
        bases: list[str] = []
        if i + 2 < len(tokens) and tokens[i + 2].string == "(":
            depth, j = 1, i + 3
            while depth and j < len(tokens):
                depth += {"(": 1, ")": -1}.get(tokens[j].string, 0)
                if tokens[j].type == tokenize.NAME:
                    bases.append(tokens[j].string)
                j += 1
        named_like_one = ERROR_NAME.fullmatch(name) is not None
        if not name.startswith("_") and (named_like_one or any(map(ERROR_NAME.fullmatch, bases))):
            found.append(name)
    return found


def _scanned() -> list[Path]:
    paths = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC)
        if relative.parts[0] not in NOT_SCANNED and relative.as_posix() != HOME:
            paths.append(path)
    return paths


def test_the_scan_sees_error_classes() -> None:
    source = (
        "class FooError(Base):\n    pass\n"
        "class Quiet(\n    Mixin, RuntimeWarning\n):\n    pass\n"
        "if x:\n    class Nested(Exception): ...\n"
        "class _Private(Exception): ...\n"
        "class Model(Struct, kw_only=True): ...\n"
        "x = 'class Fake(Exception)'\n"
        "class Plain: ...\n"
    )
    assert error_classes(source) == ["FooError", "Quiet", "Nested"]
    assert "GitError" in error_classes((SRC / HOME).read_text(encoding="utf-8"))


def test_no_other_module_defines_an_error_or_warning() -> None:
    strays = []
    for path in _scanned():
        relative = path.relative_to(SRC).as_posix()
        for name in error_classes(path.read_text(encoding="utf-8")):
            if (relative, name) not in NOT_EXCEPTIONS:
                strays.append(f"{relative}: {name}")
    assert strays == [], "define these in src/wrenn/_exceptions.py"


def test_the_exceptions_to_ignore_are_still_there_and_no_exceptions() -> None:
    for relative, name in NOT_EXCEPTIONS:
        module = importlib.import_module("wrenn." + relative.removesuffix(".py").replace("/", "."))
        assert not issubclass(getattr(module, name), BaseException), name


def test_the_public_module_exports_every_one_defined_in_the_home() -> None:
    home = importlib.import_module("wrenn._exceptions")
    defined = {
        name
        for name, value in vars(home).items()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == "wrenn._exceptions"
        and not name.startswith("_")
    }
    internal = {"DeadlineReached"}  # control flow between the socket and its readers
    assert set(wrenn.exceptions.__all__) - {"handle_response"} == defined - internal
    for name in defined - internal:
        assert getattr(wrenn.exceptions, name) is getattr(home, name)


def test_old_import_paths_still_work() -> None:
    from wrenn._async._websocket import DeadlineReached
    from wrenn._compat import BlockingCallWarning
    from wrenn._config import InsecureTransportWarning
    from wrenn._git import GitAuthError, GitCommandError, GitError
    from wrenn.models import ModelValidationError

    assert GitError is wrenn.exceptions.GitError
    assert issubclass(GitAuthError, GitError) and issubclass(GitCommandError, GitError)
    assert BlockingCallWarning is wrenn.exceptions.BlockingCallWarning
    assert InsecureTransportWarning is wrenn.exceptions.InsecureTransportWarning
    assert ModelValidationError is wrenn.exceptions.ModelValidationError
    assert DeadlineReached.__module__ == "wrenn._exceptions"
