"""pytest fixtures for code that uses wrenn: one suite, on the embedded server or the platform.

Registered through the ``pytest11`` entry point (``pip install "wrenn[pytest]"``), or
loaded with ``-p wrenn.pytest_plugin``. It only adds fixtures named ``wrenn_*``, the
``--wrenn-target`` option and the ``wrenn_*`` markers: a test that uses none of them
runs exactly as before.

Fixtures:
    ``wrenn_target``: ``"local"`` or ``"hosted"`` (``--wrenn-target``, else the
    ``WRENN_TARGET`` environment variable, else ``"local"``).
    ``wrenn_server``: a session-wide :class:`wrenn.local.LocalServer` (local target only).
    ``wrenn_credentials``: ``{"api_key": ..., "base_url": ...}`` of the target.
    ``wrenn_client`` / ``wrenn_async_client``: a blocking / async client wired to it.
    ``wrenn_capsule`` / ``wrenn_async_capsule``: a running capsule for one test, always
    destroyed afterwards (``@pytest.mark.wrenn_capsule(template=..., ...)`` sets it up).
    ``wrenn_faults``: the embedded server's fault injection (``wrenn_server.faults``,
    local target only), cleared after the test.

The async fixtures run under anyio's pytest plugin (anyio is a wrenn dependency): mark
the test ``@pytest.mark.anyio``.

Markers: ``wrenn_local`` (only against the embedded server) and ``wrenn_hosted`` (only
against the platform). The hosted target needs ``WRENN_API_KEY``; without it, every test
that needs the platform is skipped, with the reason.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from wrenn import AsyncCapsule, AsyncWrennClient, Capsule, WrennClient
    from wrenn.local import Faults, LocalServer

TARGETS = ("local", "hosted")
_NO_KEY = "--wrenn-target=hosted needs WRENN_API_KEY (the team API key) in the environment"
_CAPSULE_ARGS = ("template", "vcpus", "memory_mb", "timeout")
_SERVERS: list[LocalServer] = []  # the running wrenn_server (its faults are cleared per test)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("wrenn", "wrenn fixtures")
    group.addoption(
        "--wrenn-target",
        choices=TARGETS,
        default=None,
        help="where the wrenn_* fixtures point: the embedded server (local, the default; "
        "or $WRENN_TARGET) or the platform (hosted, with $WRENN_API_KEY)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "wrenn_local: run only against the embedded server (--wrenn-target=local)"
    )
    config.addinivalue_line(
        "markers", "wrenn_hosted: run only against the Wrenn platform (--wrenn-target=hosted)"
    )
    config.addinivalue_line(
        "markers",
        "wrenn_capsule(template=None, vcpus=None, memory_mb=None, timeout=None): "
        "how the wrenn_capsule / wrenn_async_capsule fixtures create their capsule",
    )


def _target(config: pytest.Config) -> str:
    chosen = config.getoption("--wrenn-target", default=None) or os.environ.get("WRENN_TARGET")
    target = (chosen or "local").strip().lower()
    if target not in TARGETS:
        raise pytest.UsageError(f"WRENN_TARGET must be local or hosted, not {chosen!r}")
    return target


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    local, hosted = item.get_closest_marker("wrenn_local"), item.get_closest_marker("wrenn_hosted")
    if local is None and hosted is None:
        return
    target = _target(item.config)
    if local is not None and target != "local":
        pytest.skip("marked wrenn_local: runs only against the embedded server")
    if hosted is not None and target != "hosted":
        pytest.skip("marked wrenn_hosted: runs only with --wrenn-target=hosted")
    if hosted is not None and not os.environ.get("WRENN_API_KEY"):
        pytest.skip(_NO_KEY)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    # Before any fixture is torn down: a fault a test left in force never reaches the
    # next test, nor this test's own clean-up (a capsule fixture's destroy call).
    for server in _SERVERS:
        server.faults.clear()


@pytest.fixture(scope="session")
def wrenn_target(pytestconfig: pytest.Config) -> str:
    """``"local"`` (the embedded server) or ``"hosted"`` (the Wrenn platform)."""
    return _target(pytestconfig)


@pytest.fixture(scope="session")
def wrenn_server(wrenn_target: str) -> Iterator[LocalServer]:
    """One embedded Wrenn server for the whole session, stopped at its end."""
    if wrenn_target != "local":
        pytest.skip("wrenn_server is the embedded server; this run targets the hosted platform")
    try:
        from wrenn.local import LocalServer
    except ImportError as exc:
        pytest.fail(
            f"wrenn_server needs the embedded server: pip install 'wrenn[pytest]' ({exc})",
            pytrace=False,
        )
    with LocalServer() as server:
        _SERVERS.append(server)
        try:
            yield server
        finally:
            _SERVERS.remove(server)


@pytest.fixture
def wrenn_faults(wrenn_target: str, request: pytest.FixtureRequest) -> Iterator[Faults]:
    """``wrenn_server.faults``: deterministic faults (429s, resets, cut streams, ...),
    cleared before and after the test. Local target only: skipped against the platform."""
    if wrenn_target != "local":
        pytest.skip("wrenn_faults needs the embedded server; this run targets the hosted platform")
    server: LocalServer = request.getfixturevalue("wrenn_server")
    server.faults.clear()
    try:
        yield server.faults
    finally:
        server.faults.clear()


@pytest.fixture(scope="session")
def wrenn_credentials(wrenn_target: str, request: pytest.FixtureRequest) -> dict[str, str | None]:
    """``api_key`` and ``base_url`` of the target (the hosted one from the environment)."""
    if wrenn_target == "local":
        server: LocalServer = request.getfixturevalue("wrenn_server")
        return {"api_key": server.api_key, "base_url": server.base_url}
    api_key = os.environ.get("WRENN_API_KEY")
    if not api_key:
        pytest.skip(_NO_KEY)
    return {"api_key": api_key, "base_url": os.environ.get("WRENN_BASE_URL") or None}


@pytest.fixture
def wrenn_client(wrenn_credentials: dict[str, str | None]) -> Iterator[WrennClient]:
    """A blocking ``WrennClient`` wired to the target, closed after the test."""
    from wrenn import WrennClient

    with WrennClient(**_connection(wrenn_credentials)) as client:
        yield client


@pytest.fixture
async def wrenn_async_client(
    wrenn_credentials: dict[str, str | None], anyio_backend: Any
) -> AsyncIterator[AsyncWrennClient]:
    """An ``AsyncWrennClient`` wired to the target, closed after the test (``@pytest.mark.anyio``)."""
    from wrenn import AsyncWrennClient

    async with AsyncWrennClient(**_connection(wrenn_credentials)) as client:
        yield client


def _connection(credentials: dict[str, str | None]) -> dict[str, Any]:
    return {"api_key": credentials["api_key"], "base_url": credentials["base_url"]}


def _capsule_args(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("wrenn_capsule")
    if marker is None:
        return {}
    if marker.args:
        raise pytest.UsageError("wrenn_capsule takes keyword arguments only (template=...)")
    unknown = set(marker.kwargs) - set(_CAPSULE_ARGS)
    if unknown:
        raise pytest.UsageError(f"wrenn_capsule does not take {', '.join(sorted(unknown))}")
    return dict(marker.kwargs)


@pytest.fixture
def wrenn_capsule(
    wrenn_credentials: dict[str, str | None], request: pytest.FixtureRequest
) -> Iterator[Capsule]:
    """A running ``Capsule`` for this test, destroyed afterwards whatever happens."""
    from wrenn import Capsule

    with Capsule.create(**_capsule_args(request), **_connection(wrenn_credentials)) as capsule:
        yield capsule


@pytest.fixture
async def wrenn_async_capsule(
    wrenn_credentials: dict[str, str | None], request: pytest.FixtureRequest, anyio_backend: Any
) -> AsyncIterator[AsyncCapsule]:
    """A running ``AsyncCapsule`` for this test, destroyed afterwards (``@pytest.mark.anyio``)."""
    from wrenn import AsyncCapsule

    capsule = await AsyncCapsule.create(**_capsule_args(request), **_connection(wrenn_credentials))
    async with capsule:
        yield capsule
