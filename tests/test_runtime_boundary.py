"""wrenn.local talks to its isolation backends through one interface.

Outside ``wrenn/local/_runtime`` a sandbox is used only through the members in
``_runtime.INTERFACE`` (the manager, files, PTY, processes, metrics and kernels
alike), and a backend is picked only through the registry: no module imports a
backend's own module.  Read as tokens and text, not parsed: CPython 3.11's ast
can race a traceback formatted in another thread (a server of an earlier test).
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

from wrenn.local._runtime import INTERFACE, Sandbox

LOCAL = Path(__file__).resolve().parents[1] / "src" / "wrenn" / "local"
# The names a sandbox goes by outside the runtime.
SANDBOX_NAMES = {"sandbox", "_sandbox"}
# The backends themselves, and how one is picked; only the registry imports them.
BACKEND_MODULES = ("_bwrap", "_plain", "_probe", "_base")
ANNOTATED = re.compile(r"\b(\w+)\s*:\s*(?:_runtime\.)?Sandbox\b")
IMPORT = re.compile(r"^\s*(?:from|import)\s+[\w.]*_runtime\.(\w+)", re.M)


def _modules() -> list[Path]:
    return sorted(LOCAL.glob("*.py"))


def sandbox_members(text: str) -> list[tuple[int, str]]:
    """(line, member) for every ``sandbox.member`` / ``x._sandbox.member`` in ``text``."""
    tokens = [
        t
        for t in tokenize.generate_tokens(io.StringIO(text).readline)
        if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT)
    ]
    found = []
    for first, dot, member in zip(tokens, tokens[1:], tokens[2:], strict=False):
        if (
            first.type == tokenize.NAME
            and first.string in SANDBOX_NAMES
            and dot.string == "."
            and member.type == tokenize.NAME
        ):
            found.append((member.start[0], member.string))
    return found


def test_code_outside_the_runtime_uses_only_the_interface() -> None:
    offenders = [
        f"{path.name}:{line}: sandbox.{member}"
        for path in _modules()
        for line, member in sandbox_members(path.read_text())
        if member not in INTERFACE
    ]
    assert offenders == []


def _declared(cls: type, name: str) -> bool:
    """A member of the class, or an attribute annotated on it (set per instance)."""
    return hasattr(cls, name) or any(
        name in vars(k).get("__annotations__", {}) for k in cls.__mro__
    )


def test_the_interface_is_declared_on_every_backend() -> None:
    from wrenn.local._runtime._registry import BACKENDS

    assert set(BACKENDS) >= {"bwrap", "none"}
    for cls in (Sandbox, *BACKENDS.values()):
        missing = sorted(name for name in INTERFACE if not _declared(cls, name))
        assert missing == [], cls
    for cls in BACKENDS.values():
        assert cls.__abstractmethods__ == frozenset(), cls
        assert cls.kind in BACKENDS and BACKENDS[cls.kind] is cls


def test_sandboxes_go_by_the_scanned_names() -> None:
    # A sandbox held under another name would slip past the member scan.
    offenders = [
        f"{path.name}: {name}"
        for path in _modules()
        for name in ANNOTATED.findall(path.read_text())
        if name not in SANDBOX_NAMES
    ]
    assert offenders == []


def test_no_module_outside_the_runtime_imports_a_backend() -> None:
    offenders = [
        f"{path.name}: _runtime.{module}"
        for path in _modules()
        for module in IMPORT.findall(path.read_text())
        if module in BACKEND_MODULES
    ]
    assert offenders == []


def test_the_scans_see_what_they_look_for() -> None:
    text = (
        "x = live.sandbox.freezer.frozen\n"
        "self._sandbox.wrappers.discard(1)  # sandbox.comment\n"
        "s = 'sandbox.in_a_string'\n"
        "sandbox.boot()\n"
    )
    assert sandbox_members(text) == [(1, "freezer"), (2, "wrappers"), (4, "boot")]
    assert ANNOTATED.findall("def f(sb: Sandbox, sandbox: _runtime.Sandbox) -> None:") == [
        "sb",
        "sandbox",
    ]
    imports = "from ._runtime._bwrap import PTY_MAX\nfrom ._runtime import Backend\n"
    assert IMPORT.findall(imports) == ["_bwrap"]
