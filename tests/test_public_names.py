"""``wrenn``'s public names come from one list, ``_HOMES`` in ``wrenn/__init__.py``.

``__all__`` and the lazy-import table are made from it at import time; the imports type
checkers read (under ``TYPE_CHECKING``) cannot be, so this test holds them to it, read
as tokens (see tests/test_netbackend_internals.py for why not through ``ast``). The
exceptions' list is ``wrenn._exceptions.__all__``, which ``wrenn.exceptions`` re-exports.
"""

from __future__ import annotations

import importlib
import io
import tokenize
from pathlib import Path

import wrenn

INIT = Path(wrenn.__file__)


def type_checking_imports(text: str) -> dict[str, str]:
    """``exported name -> absolute module`` of the ``from . import`` lines under ``if TYPE_CHECKING:``."""
    found: dict[str, str] = {}
    inside = False
    line: list[str] = []
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.DEDENT:
            inside = False
        elif token.type == tokenize.NEWLINE:
            if line[:2] == ["if", "TYPE_CHECKING"]:
                inside = True
            elif inside and line and line[0] == "from":
                found.update(_names_of(line))
            line = []
        elif token.type not in (tokenize.COMMENT, tokenize.NL, tokenize.INDENT):
            line.append(token.string)
    return found


def _names_of(line: list[str]) -> dict[str, str]:
    split = line.index("import")
    module = "".join(line[1:split])
    module = "wrenn" + module if module.startswith(".") else module
    words = [w for w in line[split + 1 :] if w not in ("(", ")")]
    names: dict[str, str] = {}
    for part in " ".join(words).split(","):
        pieces = part.split()
        if pieces:
            names[pieces[-1]] = f"{module}.{pieces[0]}"
    return names


def test_the_scan_reads_plain_aliased_and_wrapped_imports() -> None:
    source = (
        "import x\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from ._a import A as A  # a comment\n"
        "    from ._b import (\n        B,\n        C as D,\n    )\n"
        "from ._outside import E\n"
    )
    assert type_checking_imports(source) == {
        "A": "wrenn._a.A",
        "B": "wrenn._b.B",
        "D": "wrenn._b.C",
    }


def test_all_is_the_lazy_table_and_the_deprecated_names() -> None:
    lazy = {name for names in wrenn._HOMES.values() for name in names}
    assert len(lazy) == sum(len(names) for names in wrenn._HOMES.values())  # none twice
    assert set(wrenn.__all__) == lazy | set(wrenn._DEPRECATED) | {"__version__"}
    assert len(wrenn.__all__) == len(set(wrenn.__all__))


def test_type_checkers_see_each_name_from_its_home() -> None:
    seen = type_checking_imports(INIT.read_text(encoding="utf-8"))
    expected = {name: f"{module}.{name}" for name, module in wrenn._LAZY.items()}
    for old, new in wrenn._DEPRECATED.items():
        expected[old] = expected[new]
    assert seen == expected


def test_each_name_is_defined_where_the_table_says() -> None:
    for name, module in wrenn._LAZY.items():
        value = getattr(importlib.import_module(module), name)
        assert getattr(wrenn, name) is value, name


def test_every_exception_and_warning_is_exported_at_the_top() -> None:
    exceptions = importlib.import_module("wrenn._exceptions")
    assert set(wrenn._HOMES["wrenn._exceptions"]) == set(exceptions.__all__)
    public = importlib.import_module("wrenn.exceptions")
    assert set(public.__all__) == set(exceptions.__all__) | {"handle_response"}
