"""RELIABILITY.md §3 F: bad user inputs (UI-01 .. UI-05)."""

from __future__ import annotations

import datetime
import inspect
from collections.abc import Awaitable, Callable

import pytest

from tests._async.clients import client_for
from tests.faultserver import FaultServer
from tests.reliability.fixtures import CID, KEY
from wrenn import AsyncWrennClient, WrennError
from wrenn._async.capsule import AsyncCapsule
from wrenn._async.commands import AsyncCommands
from wrenn._async.files import AsyncFiles

pytestmark = pytest.mark.anyio


_ENCODED = {
    "a/b": "a%2Fb",
    "x?range=1": "x%3Frange=1",
    "x#f": "x%23f",
    "%2e%2e": "%252e%252e",
    "%20": "%2520",
    "ü": "%C3%BC",
    " x": "%20x",
}


def _operations(client: AsyncWrennClient, value: str) -> dict[str, Callable[[], Awaitable[object]]]:
    return {
        "capsules.get": lambda: client.capsules.get(value),
        "capsules.destroy": lambda: client.capsules.destroy(value),
        "capsules.pause": lambda: client.capsules.pause(value),
        "capsules.resume": lambda: client.capsules.resume(value),
        "capsules.ping": lambda: client.capsules.ping(value),
        "capsules.metrics": lambda: client.capsules.metrics(value),
        "snapshots.delete": lambda: client.snapshots.delete(value),
        "processes.kill": lambda: AsyncCommands(client, CID).kill(value),
        "processes.list": lambda: AsyncCommands(client, value).list(),
        "files.list": lambda: AsyncFiles(client, value).list("/"),
        "exec.background": lambda: AsyncCommands(client, value).run("true", background=True),
    }


@pytest.mark.parametrize("value", list(_ENCODED))
async def test_UI01_path_params_are_one_encoded_segment(srv: FaultServer, value: str) -> None:
    url = srv.url_for("ok")
    async with client_for(url) as client:
        for name, operation in _operations(client, value).items():
            before = srv.count(url)
            try:
                await operation()
            except WrennError:
                pass  # the ok server may answer 404 for an odd id; the target is what counts
            records = srv.requests(url)[before:]
            assert len(records) == 1, name
            record = records[0]
            assert _ENCODED[value] in record.path.split("/"), (name, record.target)
            assert record.query in ("", "signal=SIGKILL"), (name, record.target)
            assert "#" not in record.target
        # The streaming routes (WebSocket exec and process streams) too.
        capsule = AsyncCapsule.__new__(AsyncCapsule)
        capsule._setup(value, client, None)
        for stream in (
            AsyncCommands(client, value).stream("true"),
            AsyncCommands(client, CID).connect(value),
            capsule.pty(),
        ):
            before = srv.count(url)
            try:
                async with stream as events:
                    async for _ in events:
                        pass
            except WrennError:
                pass
            record = srv.requests(url)[before]
            assert _ENCODED[value] in record.path.split("/"), record.target


@pytest.mark.parametrize(
    "value", [".", "..", "../api-keys", "../snapshots/x", "x/../../usage", "./x", "a/./b"]
)
async def test_UI02_dot_segments_are_refused_before_io(srv: FaultServer, value: str) -> None:
    url = srv.url_for("ok")
    async with client_for(url) as client:
        for name, operation in _operations(client, value).items():
            with pytest.raises(ValueError):
                await operation()
            assert srv.count(url) == 0, name


async def test_UI03_empty_blank_and_control_values_are_refused(srv: FaultServer) -> None:
    url = srv.url_for("ok")
    async with client_for(url) as client:
        for value in ("", "   ", "\t", "a\rb", "a\nb", "a\x00b"):
            for name, operation in _operations(client, value).items():
                with pytest.raises(ValueError):
                    await operation()
                assert srv.count(url) == 0, (name, value)
        for bad in (None, 1, b"id"):
            with pytest.raises(TypeError):
                await client.capsules.get(bad)  # type: ignore[arg-type]
    for headers in ({"X-A": "a\r\nX-Injected: 1"}, {"X-A\n": "v"}, {"X-A": "a\x00"}):
        with pytest.raises(ValueError):
            client_for(url, default_headers=headers)
    for key in (KEY + "\n", " " + KEY, KEY + "\x00", KEY[:10] + "\r\n" + KEY[10:]):
        with pytest.raises(ValueError) as info:
            AsyncWrennClient(api_key=key, base_url=url)
        assert KEY not in str(info.value) and KEY[4:20] not in str(info.value)
    assert srv.count(url) == 0


@pytest.mark.parametrize(
    "capsule_id", ["x.attacker.test#", "a/b", "x@y", "UPPER", "a" * 64, "", "-x", "x-"]
)
async def test_UI04_proxy_hostnames_accept_only_dns_labels(
    srv: FaultServer, capsule_id: str
) -> None:
    url = srv.url_for("ok")
    async with client_for(url) as client:
        capsule = AsyncCapsule.__new__(AsyncCapsule)
        capsule._setup(capsule_id, client, None)
        with pytest.raises(ValueError):
            capsule.get_url(8888)
        good = AsyncCapsule.__new__(AsyncCapsule)
        good._setup("cl-0k3x9a8b7c6d5e4f3g2h1i0j9", client, None)
        assert good.get_url(8888).startswith("http://8888-cl-0k3x9a8b7c6d5e4f3g2h1i0j9.")
    assert srv.count(url) == 0


async def test_UI05_typed_params_fail_consistently(srv: FaultServer) -> None:
    url = srv.url_for("ok")
    async with client_for(url) as client:
        capsule = AsyncCapsule.__new__(AsyncCapsule)
        capsule._setup(CID, client, None)
        checks: list[tuple[Callable[[], object], type[Exception]]] = [
            (lambda: client.capsules.usage(from_=20260101), TypeError),  # type: ignore[arg-type]
            (lambda: client.capsules.usage(to=1), TypeError),  # type: ignore[arg-type]
            (lambda: client.capsules.usage(from_="yesterday"), ValueError),
            (lambda: client.capsules.get(42), TypeError),  # type: ignore[arg-type]
            (lambda: client.capsules.get(b"id"), TypeError),  # type: ignore[arg-type]
            (lambda: client.capsules.create(vcpus=0), ValueError),
            (lambda: client.capsules.create(vcpus="2"), TypeError),  # type: ignore[arg-type]
            (lambda: AsyncCommands(client, CID).run("true", timeout=-1), ValueError),
            (lambda: capsule.pty(cols=0), ValueError),
            (lambda: capsule.pty(rows=-1), ValueError),
        ]
        for index, (call, expected) in enumerate(checks):
            with pytest.raises(expected):
                result = call()
                if inspect.isawaitable(result):
                    result = await result
            assert srv.count(url) == 0, index
        # Documented pass-through: an unknown range is sent, encoded, for the server to judge.
        await client.capsules.stats(range="1w&x=y")
        record = srv.requests(url)[-1]
        assert record.query == "range=1w%26x%3Dy"
        await client.capsules.usage(from_=datetime.date(2026, 1, 1))
        assert srv.requests(url)[-1].query == "from=2026-01-01"
