"""Every httpx/httpcore internal the SDK relies on exists in the installed versions.

``wrenn._netbackend`` is the only package that reaches past their public API, and it
lists what it uses. If an upgrade moves one of those names this test fails, instead of
the SDK silently losing a guard (``heal_pool`` and ``pool_size`` read internals
defensively, so they would otherwise just stop working).
"""

from __future__ import annotations

import importlib
import io
import tokenize
from pathlib import Path

import httpx
import pytest

from wrenn import _netbackend

SRC = Path(__file__).resolve().parents[1] / "src" / "wrenn"


@pytest.mark.parametrize(("module", "name"), _netbackend.PRIVATE_API)
def test_private_functions_exist(module: str, name: str) -> None:
    assert callable(getattr(importlib.import_module(module), name))


@pytest.mark.parametrize("transport_class", [httpx.AsyncHTTPTransport, httpx.HTTPTransport])
def test_pool_attributes_exist(transport_class: type) -> None:
    transport = transport_class(limits=httpx.Limits(max_connections=3))
    for name in _netbackend.TRANSPORT_ATTRIBUTES:
        assert hasattr(transport, name), name
    pool = transport._pool
    for name in _netbackend.POOL_ATTRIBUTES:
        assert hasattr(pool, name), name
    assert pool._max_connections == 3
    assert isinstance(pool._connections, list)
    assert isinstance(pool._requests, list)


@pytest.mark.parametrize("client_class", [httpx.AsyncClient, httpx.Client])
def test_client_attributes_exist(client_class: type) -> None:
    client = client_class()
    for name in _netbackend.CLIENT_ATTRIBUTES:
        assert hasattr(client, name), name
    assert type(client._cookies) is httpx.Cookies  # what skip_cookie_extraction replaces


def test_pool_request_and_connection_attributes_exist() -> None:
    import httpcore

    pool = httpcore.ConnectionPool()
    request = httpcore.Request("GET", "http://127.0.0.1:9/")
    pool_request = httpcore._sync.connection_pool.PoolRequest(request)
    for name in _netbackend.POOL_REQUEST_ATTRIBUTES:
        assert hasattr(pool_request, name), name
    connection = pool.create_connection(httpcore.Origin(b"http", b"127.0.0.1", 9))
    for name in _netbackend.POOL_CONNECTION_ATTRIBUTES:
        assert hasattr(connection, name), name
    assert connection._connection is None and connection._connect_failed is False
    pool.close()


def test_heal_and_size_read_a_real_pool() -> None:
    with httpx.Client(transport=httpx.HTTPTransport(limits=httpx.Limits(max_connections=4))) as c:
        assert _netbackend.pool_size(c) == 4
        assert _netbackend.heal_pool(c) == 0


def _private_uses(path: Path) -> list[str]:
    """``httpx._x``/``httpcore._x`` imports and ``._pool``-style reads of pool internals.

    Tokens, not an AST: CPython 3.11's ast can race a traceback formatted in another
    thread (a server of an earlier test), which failed CI once.
    """
    found = []
    watched = {
        *_netbackend.TRANSPORT_ATTRIBUTES,
        *_netbackend.POOL_ATTRIBUTES,
        *_netbackend.POOL_CONNECTION_ATTRIBUTES,
    }
    tokens = [
        t
        for t in tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
        if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE)
    ]
    for before, token, after in zip(tokens, tokens[1:], tokens[2:], strict=False):
        if token.string == "." and before.string in ("httpx", "httpcore"):
            if after.string.startswith("_"):
                found.append(f"{before.string}.{after.string}")
        elif token.string == "." and after.string in watched:
            found.append(after.string)
        elif token.type == tokenize.STRING and token.string[1:-1] in watched:
            found.append(token.string[1:-1])
    return found


def test_the_scan_sees_imports_attributes_and_names(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from httpx._utils import x\npool._connections  # a ._pool in a comment\n"
        'getattr(p, "_pool")\n'
    )
    assert _private_uses(sample) == ["httpx._utils", "_connections", "_pool"]


def test_no_other_module_touches_httpx_or_httpcore_internals() -> None:
    offenders = {}
    for path in sorted(SRC.rglob("*.py")):
        if path.is_relative_to(SRC / "_netbackend"):
            continue
        uses = _private_uses(path)
        if uses:
            offenders[str(path.relative_to(SRC))] = uses
    assert offenders == {}
