"""Resources send only through ``AsyncAPIResource``; internals stay behind their modules.

No resource module reads the client's options or requester itself (the base class in
``_resource.py`` does, with per-call ``timeout`` and ``extra_headers``), and no module
imports an underscore helper of the requester.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "wrenn"
# The client owns its options and requester; the base class is the one way to them.
# The WebSocket helper is part of the request path: its upgrade is a requester stream.
OWNERS = {"client.py", "_resource.py", "_requester.py", "_transport.py", "_websocket.py"}
FORBIDDEN = re.compile(r"\._options\b|\._requester\b")


def _modules() -> list[Path]:
    return [
        path
        for tree in ("_async", "_sync")
        for path in sorted((SRC / tree).glob("*.py"))
        if path.name not in OWNERS
    ]


def test_no_resource_module_touches_options_or_requester() -> None:
    offenders = [
        f"{path.relative_to(SRC)}:{number}: {line.strip()}"
        for path in _modules()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if FORBIDDEN.search(line)
    ]
    assert offenders == []


def test_no_module_imports_private_names_of_the_request_path() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith(
                ("_requester", "_transport", "_body")
            ):
                offenders += [
                    f"{path.relative_to(SRC)}: {alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_")
                ]
    assert offenders == []
