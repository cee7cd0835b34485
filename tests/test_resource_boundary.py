"""Resources send only through ``AsyncAPIResource``; internals stay behind their modules.

No resource module reads the client's options or requester itself (the base class in
``_resource.py`` does, with per-call ``timeout`` and ``extra_headers``), and no module
imports an underscore helper of the requester.
"""

from __future__ import annotations

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


# ``from ..x._requester import a, _b`` and its parenthesised, multi-line form. Read as
# text, not parsed: CPython 3.11's ast can race a traceback formatted in another thread
# (a server of an earlier test), which failed CI once.
IMPORT = re.compile(
    r"^\s*from\s+[\w.]*(?:_requester|_transport|_body)\s+import\s+(\([^)]*\)|[^\n]*)", re.M
)


def test_no_module_imports_private_names_of_the_request_path() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        for match in IMPORT.finditer(path.read_text()):
            names = re.findall(r"[A-Za-z_]\w*(?:\s+as\s+\w+)?", match.group(1))
            offenders += [
                f"{path.relative_to(SRC)}: {name}" for name in names if name.startswith("_")
            ]
    assert offenders == []


def test_the_import_pattern_sees_both_forms() -> None:
    text = "from ._requester import a, _b\nfrom .._body import (\n    c,\n    _d,\n)\n"
    found = [m.group(1) for m in IMPORT.finditer(text)]
    assert len(found) == 2 and "_b" in found[0] and "_d" in found[1]


# ``httpx.AsyncClient(``, ``httpx.Client(`` and the names imported bare. A module with a
# client of its own would send past the pool's limits, deadlines, guards and tracing.
HTTPX_CLIENT = re.compile(r"(?<![\w.])(?:httpx\.)?(?:Async)?Client\(")
CLIENT_BUILDERS = {"_async/_transport.py", "_sync/_transport.py"}


def test_only_the_transport_builds_an_httpx_client() -> None:
    offenders = [
        f"{path.relative_to(SRC)}:{number}: {line.strip()}"
        for path in sorted(SRC.rglob("*.py"))
        if str(path.relative_to(SRC)) not in CLIENT_BUILDERS
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if HTTPX_CLIENT.search(line)
    ]
    assert offenders == []


def test_the_client_pattern_sees_both_spellings_and_nothing_else() -> None:
    assert HTTPX_CLIENT.search("self._proxy = httpx.AsyncClient(base_url=base)")
    assert HTTPX_CLIENT.search("return Client(transport=transport)")
    assert not HTTPX_CLIENT.search("client = AsyncWrennClient(api_key=key)")
    assert not HTTPX_CLIENT.search("http = self.http_client(")
    assert all(HTTPX_CLIENT.search((SRC / name).read_text()) for name in CLIENT_BUILDERS)
