"""RELIABILITY.md §3 G: secrets (SE-01 .. SE-06). The key must never leak."""

from __future__ import annotations

import logging
import pickle
import ssl
import tempfile
import traceback
from collections.abc import Iterator

import httpx
import pytest

from tests._async.clients import client_for
from tests.faultserver import FaultServer
from tests.reliability.fixtures import (
    CID,
    KEY,
    StubServer,
    running_fault_server,
    self_signed_cert,
)
from wrenn import AsyncWrennClient, WrennConnectionError, WrennError
from wrenn._async.capsule import AsyncCapsule
from wrenn._async.commands import AsyncCommands
from wrenn._async.files import AsyncFiles
from wrenn._config import InsecureTransportWarning

pytestmark = pytest.mark.anyio

MASKED = KEY[:4] + "…" + KEY[-4:]
FILE_MARKER = "contents of /etc/secret-file"
UPLOAD_MARKER = b"UPLOAD-MARKER-5f1c"


@pytest.fixture(scope="module")
def srv() -> Iterator[FaultServer]:
    with running_fault_server(hang_limit=5.0) as server:
        yield server


def _assert_clean(text: str, where: object) -> None:
    assert KEY not in text, where
    assert KEY[4:-4] not in text, where


async def test_SE01_the_key_is_absent_from_reprs_vars_and_pickles(srv: FaultServer) -> None:
    async with client_for(srv.url_for("ok")) as client:
        capsule = AsyncCapsule.__new__(AsyncCapsule)
        capsule._setup(CID, client, None)
        objects: list[object] = [
            client,
            client.options,
            client.capsules,
            client.snapshots,
            client.events,
            client._requester,
            client.http,
            client.http.headers,
            capsule,
            capsule.commands,
            capsule.files,
            client.with_options(timeout=3.0),
        ]
        for obj in objects:
            for text in (repr(obj), str(obj), repr(dir(obj))):
                _assert_clean(text, obj)
            if hasattr(obj, "__dict__"):
                _assert_clean(repr(vars(obj)), obj)
        assert MASKED in repr(client)
        with pytest.raises(TypeError) as info:
            pickle.dumps(client)
        _assert_clean(str(info.value), "pickle")


def _fault_urls(srv: FaultServer) -> list[str]:
    return [
        srv.url_for("status-401"),
        srv.url_for("echo400"),
        srv.url_for("reset"),
        srv.url_for("drop"),
        srv.url_for("truncated"),
        srv.url_for("hang"),
        srv.url_for("badjson"),
        srv.url_for("html502-pad"),
        srv.url_for("redirect"),
        srv.url_for("errstr-500"),
        srv.url_for("wsclose"),
        srv.refusing_url(None),
    ]


async def _failures(srv: FaultServer) -> list[WrennError]:
    errors: list[WrennError] = []
    timeout = httpx.Timeout(5.0, read=0.1)
    for url in _fault_urls(srv):
        async with client_for(url, timeout=timeout, max_retries=0) as client:
            try:
                if "wsclose" in url:
                    async with AsyncCommands(client, CID).stream("true") as stream:
                        async for _ in stream:
                            pass
                else:
                    await client.capsules.get(CID)
            except WrennError as exc:
                errors.append(exc)
    return errors


async def test_SE02_the_key_is_absent_from_errors_and_tracebacks(srv: FaultServer) -> None:
    errors = await _failures(srv)
    assert len(errors) == len(_fault_urls(srv))
    for error in errors:
        texts = [
            str(error),
            repr(error),
            "".join(traceback.format_exception(error)),
            "".join(
                traceback.TracebackException.from_exception(error, capture_locals=True).format()
            ),
            repr(getattr(error, "body", None)),
        ]
        for text in texts:
            _assert_clean(text, error)


async def test_SE03_debug_logs_carry_metadata_but_no_key_or_bodies(
    srv: FaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    for name in (None, "wrenn", "httpx", "httpcore", "httpx_ws"):
        caplog.set_level(logging.DEBUG, logger=name)
    await _failures(srv)
    async with client_for(srv.url_for("flaky-503-1")) as client:
        await client.capsules.get(CID)
        files = AsyncFiles(client, CID)
        assert FILE_MARKER in await files.read("/etc/secret-file")
        await files.write("/tmp/upload", UPLOAD_MARKER)
        async with client.events.stream(reconnect=False) as events:
            async for _ in events:
                pass
    text = "\n".join(f"{r.name} {r.getMessage()} {r.args!r}" for r in caplog.records)
    _assert_clean(text, "logs")
    assert FILE_MARKER not in text
    assert UPLOAD_MARKER.decode() not in text
    wrenn_records = [r.getMessage() for r in caplog.records if r.name == "wrenn"]
    assert any("GET" in m and "503" in m and "retrying" in m for m in wrenn_records)
    assert any("GET" in m and "200" in m and "attempt 2" in m for m in wrenn_records)


async def test_SE04_the_key_never_travels_in_a_url(srv: FaultServer) -> None:
    await _failures(srv)
    async with client_for(srv.url_for("ok")) as client:
        await client.capsules.list()
        async with client.events.stream(reconnect=False) as events:
            async for _ in events:
                pass
        async with AsyncCommands(client, CID).stream("true") as stream:
            async for _ in stream:
                pass
        capsule = AsyncCapsule.__new__(AsyncCapsule)
        capsule._setup(CID, client, None)
        _assert_clean(capsule.get_url(8080), "proxy url")
    records = srv.requests()
    assert records
    for record in records:
        _assert_clean(record.target, record)
        assert "api_key" not in record.target.lower()
        assert record.header("X-API-Key") == KEY  # it travels in the header only


async def test_SE05_plain_http_to_a_remote_host_warns() -> None:
    with pytest.warns(InsecureTransportWarning):
        AsyncWrennClient(api_key=KEY, base_url="http://api.example.com")
    for url in ("http://127.0.0.1:9", "http://localhost:9", "https://api.example.com"):
        AsyncWrennClient(api_key=KEY, base_url=url)  # silent (warnings are errors here)
    AsyncWrennClient(api_key=KEY, base_url="http://api.example.com", allow_insecure_http=True)


async def test_SE06_tls_verification_and_custom_ca() -> None:
    with tempfile.TemporaryDirectory() as directory:
        paths = self_signed_cert(directory)
        if paths is None:
            pytest.xfail("neither the cryptography package nor the openssl CLI is available")
        cert, key = paths
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_context.load_cert_chain(cert, key)
        with StubServer(server_context) as server:
            url = f"https://127.0.0.1:{server.port}/api"
            async with client_for(url) as client:
                with pytest.raises(WrennConnectionError) as info:
                    await client.capsules.get(CID)
            assert info.value.code == "tls_error" and info.value.retries_taken == 0
            assert server.connections == 1
            context = ssl.create_default_context(cafile=cert)
            async with client_for(url, verify=context) as client:
                assert (await client.capsules.get(CID)).id == CID
            async with client_for(url, verify=cert) as client:
                assert (await client.capsules.get(CID)).id == CID


async def test_SE06_proxy_environment_is_honoured_unless_trust_env_is_false(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with StubServer() as proxy:
        for name in (
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
            "NO_PROXY",
            "no_proxy",
        ):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        target = "http://127.0.0.2:9/api"
        async with client_for(target) as client:
            assert (await client.capsules.get(CID)).id == CID
        assert proxy.request_lines == [f"GET {target}/v1/capsules/{CID} HTTP/1.1"]
        async with client_for(target, trust_env=False, max_retries=0) as client:
            with pytest.raises(WrennConnectionError):
                await client.capsules.get(CID)
        monkeypatch.setenv("NO_PROXY", "127.0.0.2")
        async with client_for(target, max_retries=0) as client:
            with pytest.raises(WrennConnectionError):
                await client.capsules.get(CID)
        assert len(proxy.request_lines) == 1
