"""Self-tests of the fault server: each scenario does what its docstring says.

Raw httpx (no retries), raw sockets and httpx-ws only; no SDK code.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from email.utils import parsedate_to_datetime

import httpx
import pytest
import trio
from httpx_ws import WebSocketDisconnect, WebSocketNetworkError, WebSocketUpgradeError, connect_ws

from .scenarios import Scenario, ScenarioError, hdr, parse_scenario, rawra
from .server import FaultServer

CID = "cl-0k3x7p2m9q4r8s1t5u6v7w8x9"


@pytest.fixture(scope="module")
def srv() -> Iterator[FaultServer]:
    with FaultServer(hang_limit=20.0) as server:
        yield server
        # No handler may have crashed during the module.
        assert server.errors() == []


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.HTTPTransport(retries=0), timeout=2.0) as c:
        yield c


def _fresh_client(timeout: float | httpx.Timeout = 2.0) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(retries=0), timeout=timeout)


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def _raw_exchange(port: int, data: bytes, host: str = "127.0.0.1") -> bytes:
    """Send raw bytes, read until the server closes (bounded by a 3 s timeout)."""
    with socket.create_connection((host, port), timeout=3.0) as s:
        s.sendall(data)
        out = b""
        for _ in range(1000):
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


# --------------------------------------------------------------------------------------
# Scenario names
# --------------------------------------------------------------------------------------


ALL_NAMES = [
    "ok",
    "echo",
    "status-503",
    "status-429-ra2",
    "flaky-503-2-ra1",
    "flaky-reset-1",
    "flaky-hang-3",
    "reset",
    "resetafter-1024",
    "drop",
    "truncated",
    "hang",
    "hangfirst-1",
    "hangbody",
    "drip",
    "driphead",
    "dripfor-1.5",
    "slow-6",
    "slowdelete-2",
    "slowpost-2.5",
    "badjson",
    "html200",
    "html502-pad",
    "empty200",
    "null200",
    "list200",
    "obj200",
    "textjson",
    "unknownstatus",
    "wrongtype",
    "huge-256",
    "errlist",
    "errstr-404",
    "errempty-429",
    "errblank-503",
    "errhtml-502",
    "echo400",
    "redirect",
    "redirect301",
    "mix",
    "mixhang",
    "sse-ok",
    "sse-keepalive-10",
    "sse-silent",
    "sse-bad",
    "sse-drop",
    "sse-newevent",
    "sse-idretry",
    "wsok",
    "wsstream",
    "wstrunc",
    "wsreset",
    "wshang",
    "wsclose",
    "wsbadjson",
    "ws401",
    "ws503",
    "ws502html",
]


def test_every_documented_name_parses() -> None:
    for name in ALL_NAMES:
        assert isinstance(parse_scenario(name), Scenario), name


def test_modifiers_parse_from_the_right() -> None:
    s = parse_scenario("flaky-429-1-ra-10-xsrfalse")
    assert (s.kind, s.arg, s.n, s.status) == ("flaky", "429", 1, 429)
    assert s.extra_headers == (("Retry-After", "-10"), ("x-should-retry", "false"))
    assert parse_scenario("status-503-radate-30").retry_after_date == -30.0
    assert parse_scenario("status-503-" + rawra("")).extra_headers == (("Retry-After", ""),)
    assert parse_scenario("errstr-404").status == 404
    assert parse_scenario("errstr").status == 500
    assert parse_scenario("html502-pad").pad


@pytest.mark.parametrize("name", ["oops", "status-5", "flaky-503", "sse-keepalive", "ok-ra"])
def test_unknown_names_fail_loudly(srv: FaultServer, name: str) -> None:
    with pytest.raises(ScenarioError):
        srv.url_for(name)


def test_unknown_name_on_the_wire_is_a_500_and_logged() -> None:
    with FaultServer() as server, _fresh_client() as c:
        r = c.get(f"{server.base_url}/s/nonsense-n1/v1/capsules")
        assert r.status_code == 500
        assert r.json()["error"]["code"] == "unknown_scenario"
        assert any("nonsense" in e for e in server.errors())


# --------------------------------------------------------------------------------------
# URLs, listeners, logs
# --------------------------------------------------------------------------------------


def test_urls_and_keys(srv: FaultServer) -> None:
    assert srv.base_url == f"http://127.0.0.1:{srv.port}"
    assert srv.other_origin_url == f"http://127.0.0.2:{srv.other_port}"
    a, b = srv.url_for("ok"), srv.url_for("ok")
    assert a != b
    assert a.startswith(f"{srv.base_url}/s/ok-n")
    assert srv.key_of(a + "/v1/capsules?x=1") == srv.key_of(a)
    assert srv.url_for("ok", origin="other").startswith(srv.other_origin_url)


def test_both_listeners_answer(srv: FaultServer, client: httpx.Client) -> None:
    for origin in ("main", "other"):
        url = srv.url_for("ok", origin=origin)
        assert client.get(url + "/health").json()["status"] == "ok"
        assert srv.requests(url)[0].local[0] == ("127.0.0.1" if origin == "main" else "127.0.0.2")


def test_request_log_and_keepalive(srv: FaultServer) -> None:
    url = srv.url_for("ok")
    with _fresh_client() as c:
        for _ in range(3):
            c.get(url + f"/v1/capsules/{CID}", headers={"X-API-Key": "wrn_test"})
        c.post(url + "/v1/capsules", json={"template": "base"})
    reqs = srv.requests(url)
    assert [r.attempt for r in reqs] == [1, 2, 3, 4]
    assert reqs[0].target == f"/s/{srv.key_of(url)}/v1/capsules/{CID}"
    assert reqs[0].path == f"/v1/capsules/{CID}"
    assert reqs[0].header("x-api-key") == "wrn_test"
    assert reqs[3].method == "POST" and json.loads(reqs[3].body) == {"template": "base"}
    # Keep-alive: one connection carried all four requests.
    assert len({r.conn_id for r in reqs}) == 1
    assert srv.connections_seen(url) == 1
    assert srv.wait_until(lambda: srv.open_connections(url) == 0, 1.0)
    conn = srv.connections(url)[0]
    assert conn.closed_at is not None and conn.closed_at >= conn.opened_at
    assert reqs[0].time <= reqs[3].time


def test_raw_target_is_logged_byte_for_byte(srv: FaultServer) -> None:
    key = srv.key_of(srv.url_for("echo"))
    target = f"/s/{key}/v1/capsules/a%2Fb%3Frange=1?x=%2e%2e"
    raw = _raw_exchange(
        srv.port, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    body = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert body["id"] == "a/b?range=1"  # mirrors the decoded path segment
    assert body["echo"]["target"] == target
    (rec,) = srv.requests(key)
    assert rec.target == target
    assert rec.path == "/v1/capsules/a%2Fb%3Frange=1"
    assert rec.query == "x=%2e%2e"


def test_absolute_form_target_when_used_as_a_proxy(srv: FaultServer) -> None:
    key = srv.key_of(srv.url_for("ok"))
    with httpx.Client(proxy=srv.base_url, timeout=2.0) as c:
        r = c.get(f"http://api.example.test/s/{key}/v1/capsules/{CID}", headers={"X-API-Key": "k"})
    assert r.json()["id"] == CID
    (rec,) = srv.requests(key)
    assert rec.target == f"http://api.example.test/s/{key}/v1/capsules/{CID}"
    assert rec.path == f"/v1/capsules/{CID}"


def test_head_has_no_body(srv: FaultServer) -> None:
    key = srv.key_of(srv.url_for("ok"))
    raw = _raw_exchange(
        srv.port, f"HEAD /s/{key}/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Content-Length: " in head and body == b""


def test_connection_close_header_is_honoured(srv: FaultServer) -> None:
    key = srv.key_of(srv.url_for("ok"))
    raw = _raw_exchange(
        srv.port, f"GET /s/{key}/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    assert b"Connection: close" in raw  # and the server closed (recv returned b"")


def test_max_concurrent_connections(srv: FaultServer) -> None:
    url = srv.url_for("slow-0.3")
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with _fresh_client() as c:
                c.get(url + "/v1/capsules")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(5)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert not errors
    assert srv.max_concurrent_connections(url) == 5
    assert srv.max_concurrent_connections() >= 5
    assert srv.max_concurrent_connections(since=started) >= 5
    assert srv.wait_until(lambda: srv.open_connections(url) == 0, 1.0)
    assert srv.max_concurrent_connections(url, since=time.monotonic()) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_is_served_and_logged(srv: FaultServer) -> None:
    url = srv.url_for("echo")
    with warnings.catch_warnings():
        # 3.12+ warns about fork() in a multi-threaded process; that is the point.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # child: one request, exit without running any pytest teardown
        code = 1
        try:
            with _fresh_client() as c:
                body = c.get(url + "/v1/capsules/cl-child").json()
            srv.count(url)  # the log lock was re-created: must not deadlock
            code = 0 if body["id"] == "cl-child" else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    (rec,) = srv.requests(url)  # the parent's server logged the child's request
    assert rec.path == "/v1/capsules/cl-child"


def test_async_usage_under_asyncio_and_trio() -> None:
    async def scenario() -> None:
        async with FaultServer() as server:
            url = server.url_for("flaky-503-1")
            transport = httpx.AsyncHTTPTransport(retries=0)
            async with httpx.AsyncClient(transport=transport, timeout=2.0) as c:
                assert (await c.get(url + "/v1/capsules")).status_code == 503
                assert (await c.get(url + "/v1/capsules")).status_code == 200
            assert await server.await_until(lambda: server.open_connections() == 0, 1.0)

    asyncio.run(scenario())
    trio.run(scenario)


# --------------------------------------------------------------------------------------
# Default routes
# --------------------------------------------------------------------------------------

ROUTES = [
    ("GET", "/v1/capsules", None, 200, list),
    ("POST", "/v1/capsules", {"template": "minimal"}, 201, dict),
    ("GET", "/v1/capsules/stats?range=5m", None, 200, dict),
    ("GET", "/v1/capsules/usage", None, 200, dict),
    ("GET", f"/v1/capsules/{CID}", None, 200, dict),
    ("DELETE", f"/v1/capsules/{CID}", None, 204, None),
    ("POST", f"/v1/capsules/{CID}/pause", None, 200, dict),
    ("POST", f"/v1/capsules/{CID}/resume", None, 200, dict),
    ("POST", f"/v1/capsules/{CID}/ping", None, 204, None),
    ("POST", f"/v1/capsules/{CID}/exec", {"cmd": "echo"}, 200, dict),
    ("POST", f"/v1/capsules/{CID}/exec", {"cmd": "sleep", "background": True}, 202, dict),
    ("GET", f"/v1/capsules/{CID}/metrics?range=1h", None, 200, dict),
    ("GET", f"/v1/capsules/{CID}/processes", None, 200, dict),
    ("DELETE", f"/v1/capsules/{CID}/processes/4242", None, 204, None),
    ("POST", f"/v1/capsules/{CID}/files/read", {"path": "/a.txt"}, 200, bytes),
    ("POST", f"/v1/capsules/{CID}/files/stream/read", {"path": "/a.txt"}, 200, bytes),
    ("POST", f"/v1/capsules/{CID}/files/write", None, 204, None),
    ("POST", f"/v1/capsules/{CID}/files/list", {"path": "/home"}, 200, dict),
    ("POST", f"/v1/capsules/{CID}/files/mkdir", {"path": "/home/d"}, 200, dict),
    ("POST", f"/v1/capsules/{CID}/files/remove", {"path": "/x"}, 204, None),
    ("GET", "/v1/snapshots", None, 200, list),
    ("POST", "/v1/snapshots", {"sandbox_id": CID, "name": "mysnap"}, 201, dict),
    ("DELETE", "/v1/snapshots/mysnap", None, 204, None),
    ("GET", "/nope", None, 404, dict),
]


def test_default_routes(srv: FaultServer, client: httpx.Client) -> None:
    url = srv.url_for("ok")
    for method, path, body, status, shape in ROUTES:
        r = client.request(method, url + path, json=body)
        assert r.status_code == status, (method, path)
        if shape is None:
            assert r.content == b""
        elif shape is bytes:
            assert r.headers["content-type"] == "application/octet-stream"
            assert b"contents of /a.txt" in r.content
        else:
            assert isinstance(r.json(), shape), (method, path)
    by_path = {(m, p): (b, s) for m, p, b, s, _ in ROUTES}
    assert by_path  # sanity
    assert client.get(url + f"/v1/capsules/{CID}").json()["id"] == CID
    assert client.post(url + f"/v1/capsules/{CID}/pause").json()["status"] == "paused"
    assert len(client.get(url + "/v1/capsules").json()) == 3
    assert client.get(url + "/v1/capsules/stats?range=5m").json()["range"] == "5m"
    assert client.get(url + f"/v1/capsules/{CID}/metrics").json()["sandbox_id"] == CID
    assert client.post(url + "/v1/snapshots", json={"name": "s1"}).json()["name"] == "s1"
    err = client.get(url + "/nope").json()
    assert err == {"error": {"code": "not_found", "message": "route not found"}}


# --------------------------------------------------------------------------------------
# Status codes and retry signals
# --------------------------------------------------------------------------------------

CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    408: "request_timeout",
    409: "invalid_state",
    413: "too_large",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    502: "agent_error",
    503: "host_unavailable",
    504: "gateway_timeout",
}


def test_status_codes_use_the_wrenn_envelope(srv: FaultServer, client: httpx.Client) -> None:
    for code, name in CODES.items():
        url = srv.url_for(f"status-{code}")
        for _ in range(2):  # always, not only once
            r = client.get(url + f"/v1/capsules/{CID}")
            assert r.status_code == code
            assert r.headers["content-type"] == "application/json"
            assert r.json()["error"]["code"] == name
        assert srv.count(url) == 2


def test_retry_after_variants(srv: FaultServer, client: httpx.Client) -> None:
    def header(name: str, key: str = "retry-after") -> str | None:
        return client.get(srv.url_for(name) + "/v1/capsules").headers.get(key)

    assert header("status-503-ra2") == "2"
    assert header("status-429-ra1.5") == "1.5"
    assert header("status-429-ra-10") == "-10"
    assert header("status-503-rams1500", "retry-after-ms") == "1500"
    for value in ["abc", "", "99999999999999999999", "0", "Wed, 21 Oct 2015 07:28:00 GMT"]:
        assert header(f"status-503-{rawra(value)}") == value
    assert header("status-503-xsrtrue", "x-should-retry") == "true"
    assert header("status-200-xsrfalse", "x-should-retry") is None  # only on failures
    assert header("status-500-xsrfalse", "x-should-retry") == "false"
    assert header(f"status-503-{hdr('X-Custom', 'v 1')}", "x-custom") == "v 1"

    for _ in range(2):
        # Aligned by the server: from the moment it answers, the date is (3, 3.5] s away.
        # That moment lies between these two readings, whatever the machine's load.
        sent_after = time.time()
        date = parsedate_to_datetime(header("status-503-radate3") or "").timestamp()
        read_at = time.time()
        assert date == int(date)
        assert date - sent_after > 3.0 and date - read_at <= 3.5
    before = time.time()
    past = parsedate_to_datetime(header("status-503-radate-30") or "").timestamp()
    assert past < before - 28


def test_flaky_status_then_ok(srv: FaultServer, client: httpx.Client) -> None:
    url = srv.url_for("flaky-503-2-ra1")
    results = [client.get(url + "/v1/capsules") for _ in range(4)]
    assert [r.status_code for r in results] == [503, 503, 200, 200]
    assert results[0].headers["retry-after"] == "1"
    assert "retry-after" not in results[2].headers
    reqs = srv.requests(url)
    assert [r.attempt for r in reqs] == [1, 2, 3, 4]
    for rec in reqs:
        assert rec.responded_at is not None and rec.responded_at >= rec.time


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("reset", httpx.ReadError),
        ("drop", httpx.RemoteProtocolError),
        ("truncated", httpx.RemoteProtocolError),
        ("hang", httpx.ReadTimeout),
    ],
)
def test_flaky_transport_faults_then_ok(
    srv: FaultServer, kind: str, error: type[Exception]
) -> None:
    url = srv.url_for(f"flaky-{kind}-1")
    with _fresh_client(timeout=0.5) as c:
        with pytest.raises(error):
            c.get(url + "/v1/capsules")
        assert c.get(url + "/v1/capsules").status_code == 200
    assert srv.count(url) == 2


# --------------------------------------------------------------------------------------
# Connection faults
# --------------------------------------------------------------------------------------


def test_reset_is_a_real_rst_mid_body(srv: FaultServer) -> None:
    url = srv.url_for("reset")
    with (
        _fresh_client() as c,
        pytest.raises(httpx.ReadError),
        c.stream("GET", url + f"/v1/capsules/{CID}") as r,
    ):
        # Headers arrived: the reset happens while the body is read.
        assert r.status_code == 200
        r.read()
    (conn,) = srv.connections(url)
    assert conn.aborted
    assert srv.wait_until(lambda: not srv.connections(url)[0].is_open, 1.0)


def test_reset_on_post_is_single_attempt(srv: FaultServer, client: httpx.Client) -> None:
    url = srv.url_for("reset")
    with pytest.raises(httpx.ReadError):
        client.post(url + "/v1/capsules", json={})
    assert srv.count(url) == 1


def test_drop_and_truncated(srv: FaultServer, client: httpx.Client) -> None:
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        client.get(srv.url_for("drop") + "/v1/capsules")
    url = srv.url_for("truncated")
    with pytest.raises(httpx.RemoteProtocolError), client.stream("GET", url + "/v1/capsules") as r:
        assert r.headers["content-length"] == "500"
        r.read()


def test_hang_times_out_and_server_sees_the_close(srv: FaultServer) -> None:
    url = srv.url_for("hang")
    with _fresh_client(timeout=0.3) as c:
        start = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            c.get(url + "/v1/capsules")
        assert 0.25 < time.monotonic() - start < 1.0
    assert srv.wait_until(lambda: srv.open_connections(url) == 0, 1.0)


def test_hangfirst_and_hangbody(srv: FaultServer) -> None:
    url = srv.url_for("hangfirst-1")
    with _fresh_client(timeout=0.3) as c:
        with pytest.raises(httpx.ReadTimeout):
            c.get(url + "/v1/capsules")
        assert c.get(url + "/v1/capsules").status_code == 200
        body_url = srv.url_for("hangbody")
        with c.stream("GET", body_url + "/v1/capsules") as r:
            assert r.status_code == 200  # headers come, the body never does
            with pytest.raises(httpx.ReadTimeout):
                r.read()


def test_drip_sends_one_byte_per_half_second(srv: FaultServer) -> None:
    url = srv.url_for("drip")
    with _fresh_client(timeout=2.0) as c, c.stream("GET", url + "/v1/capsules") as r:
        assert r.headers["content-length"] == "120"
        got = b""
        start = time.monotonic()
        for chunk in r.iter_raw():
            got += chunk
            if len(got) >= 3:
                break
        elapsed = time.monotonic() - start
    assert got.startswith(b'{"p')
    assert 0.8 < elapsed < 1.6  # bytes 2 and 3 came 0.5 s apart
    assert srv.wait_until(lambda: srv.open_connections(url) == 0, 1.0)


def test_driphead_drips_the_status_line(srv: FaultServer) -> None:
    url = httpx.URL(srv.url_for("driphead"))
    with socket.create_connection((url.host, url.port or 80), timeout=5) as s:
        s.sendall(f"GET {url.path}/v1/capsules HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = b""
        start = time.monotonic()
        for _ in range(10):
            got += s.recv(64)
            if len(got) >= 3:
                break
        elapsed = time.monotonic() - start
    assert got.startswith(b"HTT")
    assert 0.8 < elapsed < 1.6  # bytes 2 and 3 of the head came 0.5 s apart


def test_dripfor_spreads_a_valid_answer_over_its_seconds(srv: FaultServer) -> None:
    url = srv.url_for("dripfor-1")
    start = time.monotonic()
    with _fresh_client(timeout=2.0) as c:
        r = c.get(url + "/v1/capsules")
    assert r.status_code == 200 and isinstance(r.json(), list)
    assert 0.8 < time.monotonic() - start < 3.0


def test_slowdelete_deletes_then_404(srv: FaultServer) -> None:
    url = srv.url_for("slowdelete-1")
    with _fresh_client(timeout=0.4) as c:
        with pytest.raises(httpx.ReadTimeout):
            c.delete(url + f"/v1/capsules/{CID}")
        assert srv.flags(url)["deleted"]
        assert c.delete(url + f"/v1/capsules/{CID}").status_code == 404
    with _fresh_client(timeout=2.0) as c:
        other = srv.url_for("slowdelete-0.5")
        start = time.monotonic()
        assert c.delete(other + "/v1/snapshots/s1").status_code == 204
        assert time.monotonic() - start >= 0.5
        assert c.get(other + f"/v1/capsules/{CID}").status_code == 404


def test_slowpost(srv: FaultServer) -> None:
    url = srv.url_for("slowpost-1")
    with _fresh_client(timeout=0.4) as c:
        assert c.get(url + "/v1/capsules").status_code == 200  # GET is not slowed
        with pytest.raises(httpx.ReadTimeout):
            c.post(url + "/v1/capsules", json={})
    assert srv.flags(url)["posted"] == 1


def test_resetafter_cuts_an_upload(srv: FaultServer, client: httpx.Client) -> None:
    url = srv.url_for("resetafter-64")
    chunks_sent = 0

    def body() -> Iterator[bytes]:
        nonlocal chunks_sent
        for _ in range(64):  # 4 MiB total, far beyond the 64 KiB the server reads
            chunks_sent += 1
            yield b"x" * 65536

    with pytest.raises((httpx.WriteError, httpx.ReadError, httpx.RemoteProtocolError)):
        client.post(url + f"/v1/capsules/{CID}/files/stream/write", content=body())
    (rec,) = srv.requests(url)
    assert 64 * 1024 <= rec.body_size < 4 * 1024 * 1024
    assert srv.connections(url)[0].aborted


def test_chunked_upload_is_read_and_counted(srv: FaultServer, client: httpx.Client) -> None:
    url = srv.url_for("ok")

    def body() -> Iterator[bytes]:
        for i in range(10):
            yield bytes([65 + i]) * 100_000

    r = client.post(url + f"/v1/capsules/{CID}/files/stream/write", content=body())
    assert r.status_code == 204
    (rec,) = srv.requests(url)
    assert rec.header("transfer-encoding") == "chunked"
    assert rec.body_size == 1_000_000
    assert len(rec.body) == 64 * 1024 and rec.body[:1] == b"A"


def test_mix_is_deterministic(srv: FaultServer) -> None:
    url = srv.url_for("mix")
    outcome: dict[int, str] = {}
    with _fresh_client() as c:
        for i in range(1, 41):
            try:
                outcome[i] = str(c.get(url + f"/v1/capsules/{CID}").status_code)
            except httpx.ReadError:
                outcome[i] = "reset"
    assert {i for i, o in outcome.items() if o == "503"} == {7, 27}
    assert {i for i, o in outcome.items() if o == "reset"} == {13, 33}
    assert sum(o == "200" for o in outcome.values()) == 36


def test_mixhang_hangs_on_request_42(srv: FaultServer) -> None:
    url = srv.url_for("mixhang")
    with _fresh_client(timeout=0.3) as c:
        for i in range(1, 43):
            try:
                c.get(url + "/v1/capsules")
            except httpx.ReadTimeout:
                assert i == 42
            except httpx.ReadError:
                assert i % 20 == 13
            else:
                assert i != 42
    assert srv.count(url) == 42


# --------------------------------------------------------------------------------------
# Bad bodies
# --------------------------------------------------------------------------------------


def test_body_scenarios(srv: FaultServer, client: httpx.Client) -> None:
    def get(name: str, path: str = f"/v1/capsules/{CID}") -> httpx.Response:
        return client.get(srv.url_for(name) + path)

    r = get("badjson")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.content)
    r = get("html200")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    r = get("empty200")
    assert (r.status_code, r.content, r.headers["content-length"]) == (200, b"", "0")
    assert get("null200").json() is None
    assert get("list200").json()[0]["id"] == CID
    assert get("obj200", "/v1/capsules").json()["data"][0]["id"].startswith("cl-")
    r = get("textjson")
    assert r.headers["content-type"].startswith("text/plain") and r.json()["id"] == CID
    assert get("wrongtype").json()["vcpus"] == "two"
    assert [c["vcpus"] for c in get("wrongtype", "/v1/capsules").json()] == [1, "two", 1]


def test_unknownstatus(srv: FaultServer, client: httpx.Client) -> None:
    url = srv.url_for("unknownstatus")
    one = client.get(url + f"/v1/capsules/{CID}").json()
    assert one["id"] == CID and one["status"] == "migrating" and "migration" in one
    many = client.get(url + "/v1/capsules").json()
    assert [c["status"] for c in many] == ["migrating", "pausing", "running"]


def test_html502_pages(srv: FaultServer, client: httpx.Client) -> None:
    small = client.get(srv.url_for("html502") + "/v1/capsules")
    big = client.get(srv.url_for("html502-pad") + "/v1/capsules")
    for r in (small, big):
        assert r.status_code == 502 and r.headers["content-type"] == "text/html"
        assert b"502 Bad Gateway" in r.content
    assert len(small.content) < 1024
    assert 60_000 <= len(big.content) <= 64_000


def test_error_body_shapes(srv: FaultServer, client: httpx.Client) -> None:
    def get(name: str) -> httpx.Response:
        return client.get(srv.url_for(name) + "/v1/capsules")

    r = get("errlist")
    assert (r.status_code, r.json()) == (500, ["x"])
    r = get("errstr-404")
    assert (r.status_code, r.json()) == (404, {"error": "internal failure"})
    r = get("errempty-429-ra1")
    assert (r.status_code, r.json(), r.headers["retry-after"]) == (429, {}, "1")
    r = get("errblank-503")
    assert (r.status_code, r.content) == (503, b"")
    r = get("errhtml-401")
    assert r.status_code == 401 and b"401 Unauthorized" in r.content


def test_echo400_leaks_request_headers(srv: FaultServer, client: httpx.Client) -> None:
    r = client.get(
        srv.url_for("echo400") + "/v1/capsules", headers={"X-API-Key": "wrn_" + "ab" * 16}
    )
    assert r.status_code == 400 and r.headers["content-type"] == "text/html"
    assert "wrn_" + "ab" * 16 in r.text


def test_huge_body_is_streamed_not_buffered(srv: FaultServer, client: httpx.Client) -> None:
    size = 64 * 1024 * 1024
    baseline = _rss_bytes()
    peak = baseline
    total = 0
    head = tail = b""
    with client.stream("GET", srv.url_for("huge-64") + "/v1/capsules") as r:
        assert int(r.headers["content-length"]) == size
        for i, chunk in enumerate(r.iter_raw()):
            if not head:
                head = chunk[:64]
            tail = (tail + chunk)[-16:]
            total += len(chunk)
            if i % 64 == 0:
                peak = max(peak, _rss_bytes())
    assert total == size
    assert head.startswith(b'[{"id":"cl-huge"') and tail.endswith(b'xx"}]')
    # Neither side held the body: growth is far below its 64 MiB.
    assert peak - baseline < 24 * 1024 * 1024


def test_huge_object_route_is_valid_json(srv: FaultServer, client: httpx.Client) -> None:
    r = client.get(srv.url_for("huge-1") + f"/v1/capsules/{CID}")
    assert len(r.content) == 1024 * 1024
    assert r.json()["status"] == "running"


# --------------------------------------------------------------------------------------
# Redirects
# --------------------------------------------------------------------------------------


def test_redirect_307_cross_origin(srv: FaultServer, client: httpx.Client) -> None:
    url = srv.url_for("redirect")
    r = client.get(url + f"/v1/capsules/{CID}")
    assert r.status_code == 307
    assert r.headers["location"] == f"{srv.other_origin_url}/s/{srv.key_of(url)}/v1/capsules/{CID}"
    assert all(rec.local[0] == "127.0.0.1" for rec in srv.requests(url))
    followed = client.get(url + f"/v1/capsules/{CID}", follow_redirects=True)
    assert followed.status_code == 200 and followed.json()["id"] == CID
    assert [rec.local[0] for rec in srv.requests(url)] == ["127.0.0.1", "127.0.0.1", "127.0.0.2"]


def test_redirect_301_same_origin(srv: FaultServer, client: httpx.Client) -> None:
    url = srv.url_for("redirect301")
    r = client.get(url + "/v1/capsules?x=1")
    assert r.status_code == 301
    assert r.headers["location"] == f"{url}/v1/capsules?x=1&redirected=1"
    assert client.get(url + "/v1/capsules", follow_redirects=True).status_code == 200


# --------------------------------------------------------------------------------------
# Connect-phase faults
# --------------------------------------------------------------------------------------


def test_refusing_url_refuses_then_serves(srv: FaultServer) -> None:
    url = srv.refusing_url(300)
    with _fresh_client() as c:
        with pytest.raises(httpx.ConnectError):
            c.get(url + "/v1/capsules")
        time.sleep(0.4)
        assert c.get(url + "/v1/capsules").status_code == 200
    assert srv.count(url) == 1  # the refused attempt never reached the server
    with _fresh_client() as c, pytest.raises(httpx.ConnectError):
        c.get(srv.refusing_url(None) + "/v1/capsules")


def test_backlog_full_url_times_out_on_connect(srv: FaultServer) -> None:
    url = srv.backlog_full_url()
    with _fresh_client(timeout=httpx.Timeout(2.0, connect=0.5)) as c:
        start = time.monotonic()
        with pytest.raises(httpx.ConnectTimeout):
            c.post(url + "/v1/capsules", json={})
        assert 0.4 < time.monotonic() - start < 1.5


# --------------------------------------------------------------------------------------
# SSE
# --------------------------------------------------------------------------------------


def _sse(client: httpx.Client, url: str) -> tuple[httpx.Response, str]:
    with client.stream("GET", url + "/v1/events/stream") as r:
        text = b"".join(r.iter_raw()).decode()
    return r, text


def _data(text: str) -> list[dict[str, object]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


def test_sse_ok(srv: FaultServer, client: httpx.Client) -> None:
    r, text = _sse(client, srv.url_for("sse-ok"))
    assert r.headers["content-type"] == "text/event-stream"
    assert [e["event"] for e in _data(text)] == [
        "capsule.create",
        "capsule.pause",
        "capsule.resume",
    ]
    assert "event: capsule.create\ndata: {" in text
    assert text.endswith("\n\n")
    # The plain ``ok`` scenario serves the same stream.
    assert len(_data(_sse(client, srv.url_for("ok"))[1])) == 3


def test_sse_keepalive(srv: FaultServer, client: httpx.Client) -> None:
    start = time.monotonic()
    _, text = _sse(client, srv.url_for("sse-keepalive-2"))
    assert text == ":keepalive\n\n" * 2
    assert 1.9 < time.monotonic() - start < 3.0


def test_sse_silent(srv: FaultServer) -> None:
    url = srv.url_for("sse-silent")
    with _fresh_client(timeout=0.5) as c, c.stream("GET", url + "/v1/events/stream") as r:
        it = r.iter_raw()
        assert b"capsule.create" in next(it)
        with pytest.raises(httpx.ReadTimeout):
            next(it)
    assert srv.wait_until(lambda: srv.open_connections(url) == 0, 1.0)


def test_sse_bad_newevent_idretry(srv: FaultServer, client: httpx.Client) -> None:
    _, bad = _sse(client, srv.url_for("sse-bad"))
    broken = [line for line in bad.splitlines() if line.startswith("data: ")][1]
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken[6:])
    _, new = _sse(client, srv.url_for("sse-newevent"))
    events = _data(new)
    assert events[0]["event"] == "capsule.migrated" and "migration" in events[0]
    assert "event: capsule.migrated" in new
    _, idr = _sse(client, srv.url_for("sse-idretry"))
    assert idr.startswith("retry: 1500\nid: evt-1\nevent: capsule.create\n")
    assert "id: evt-2\n" in idr


def test_sse_drop_resets_after_two_events(srv: FaultServer, client: httpx.Client) -> None:
    got = b""
    with (
        pytest.raises(httpx.ReadError),
        client.stream("GET", srv.url_for("sse-drop") + "/v1/events/stream") as r,
    ):
        for chunk in r.iter_raw():
            got += chunk
    assert b"id: 1\n" in got and b"id: 2\n" in got


def test_sse_scenario_on_a_plain_route_is_ok(srv: FaultServer, client: httpx.Client) -> None:
    assert client.get(srv.url_for("sse-drop") + "/v1/capsules").status_code == 200


# --------------------------------------------------------------------------------------
# WebSocket
# --------------------------------------------------------------------------------------

EXEC = f"/v1/capsules/{CID}/exec/stream"


def _ws_frames(client: httpx.Client, url: str, start: bool = True) -> tuple[list[object], int]:
    """Collect JSON frames until the server closes; return (frames, close code)."""
    frames: list[object] = []
    with connect_ws(url, client, keepalive_ping_interval_seconds=None) as ws:
        if start:
            ws.send_json({"type": "start", "cmd": "/bin/sh", "args": ["-c", "echo hello"]})
        for _ in range(20):
            try:
                frames.append(ws.receive_json(timeout=2.0))
            except WebSocketDisconnect as exc:
                return frames, exc.code
    raise AssertionError("no close")


def test_wsok_exec(srv: FaultServer, client: httpx.Client) -> None:
    url = srv.url_for("wsok")
    frames, code = _ws_frames(client, url + EXEC)
    assert frames == [
        {"type": "start", "pid": 4242},
        {"type": "stdout", "data": "hello\n"},
        {"type": "stderr", "data": "warning\n"},
        {"type": "exit", "exit_code": 0},
    ]
    assert code == 1000
    events = srv.ws_events(url)
    kinds = [e.kind for e in events]
    assert kinds[:2] == ["open", "text"]
    assert json.loads(str(events[1].data))["type"] == "start"
    assert "sent_close" in kinds
    # httpx-ws answers the server's close: the reply is logged with its code.
    assert srv.wait_until(lambda: len(srv.ws_close_frames(url)) == 1, 1.0)
    assert srv.ws_close_frames(url)[0].code == 1000
    assert srv.wait_until(lambda: srv.open_connections(url) == 0, 1.0)


def test_wsok_pty_and_process_routes(srv: FaultServer, client: httpx.Client) -> None:
    frames, code = _ws_frames(client, srv.url_for("ok") + f"/v1/capsules/{CID}/pty")
    assert [f["type"] for f in frames] == ["started", "output", "exit"]  # type: ignore[index]
    assert frames[1] == {"type": "output", "data": "aGVsbG8K"}  # base64 "hello\n"
    assert code == 1000
    proc = srv.url_for("wsok") + f"/v1/capsules/{CID}/processes/4242/stream"
    frames, _ = _ws_frames(client, proc, start=False)  # no start message needed
    assert [f["type"] for f in frames] == ["start", "stdout", "stderr", "exit"]  # type: ignore[index]


def test_wstrunc_and_wsreset_drop_without_close_frame(
    srv: FaultServer, client: httpx.Client
) -> None:
    for name in ("wstrunc", "wsreset"):
        url = srv.url_for(name)
        frames = []
        with connect_ws(url + EXEC, client, keepalive_ping_interval_seconds=None) as ws:
            ws.send_json({"type": "start", "cmd": "x"})
            with pytest.raises(WebSocketNetworkError):
                for _ in range(5):
                    frames.append(ws.receive_json(timeout=2.0))
        assert [f["type"] for f in frames] == ["start", "stdout"]
        assert "sent_close" not in [e.kind for e in srv.ws_events(url)]


def test_wsclose_sends_1011(srv: FaultServer, client: httpx.Client) -> None:
    frames, code = _ws_frames(client, srv.url_for("wsclose") + EXEC)
    assert [f["type"] for f in frames] == ["start", "stdout"]  # type: ignore[index]
    assert code == 1011


def test_wsbadjson(srv: FaultServer, client: httpx.Client) -> None:
    url = srv.url_for("wsbadjson")
    with connect_ws(url + EXEC, client, keepalive_ping_interval_seconds=None) as ws:
        ws.send_json({"type": "start", "cmd": "x"})
        assert ws.receive_json(timeout=2.0) == {"type": "start", "pid": 4242}
        assert ws.receive_text(timeout=2.0) == "this is not json {"
    # Leaving the block sent a close frame; the server logs it.
    assert srv.wait_until(lambda: len(srv.ws_close_frames(url)) == 1, 1.0)


def test_wshang_ignores_pings_and_logs_client_close(srv: FaultServer, client: httpx.Client) -> None:
    url = srv.url_for("wshang")
    with connect_ws(url + EXEC, client, keepalive_ping_interval_seconds=None) as ws:
        pong = ws.ping(b"are-you-there")
        assert not pong.wait(0.5)
        sent_at = time.monotonic()
        ws.close(4000, "bye")
    assert srv.wait_until(lambda: len(srv.ws_close_frames(url)) == 1, 1.0)
    (close,) = srv.ws_close_frames(url)
    assert (close.code, close.reason) == (4000, "bye")
    assert close.time - sent_at < 1.0
    assert [e.kind for e in srv.ws_events(url)] == ["open", "ping", "close"]
    assert srv.wait_until(lambda: srv.open_connections(url) == 0, 1.0)


def test_wsstream_until_client_closes(srv: FaultServer, client: httpx.Client) -> None:
    url = srv.url_for("wsstream")
    with connect_ws(url + EXEC, client, keepalive_ping_interval_seconds=None) as ws:
        ws.send_json({"type": "start", "cmd": "x"})
        assert ws.receive_json(timeout=2.0)["type"] == "start"
        assert ws.receive_json(timeout=2.0) == {"type": "stdout", "data": "tick 0\n"}
        assert ws.receive_json(timeout=2.0) == {"type": "stdout", "data": "tick 1\n"}
    assert srv.wait_until(lambda: len(srv.ws_close_frames(url)) == 1, 1.0)
    assert srv.ws_close_frames(url)[0].code == 1000
    assert srv.wait_until(lambda: srv.open_connections(url) == 0, 1.0)


@pytest.mark.parametrize(
    ("name", "status", "ctype"),
    [
        ("ws401", 401, "application/json"),
        ("ws503", 503, "application/json"),
        ("ws502html", 502, "text/html"),
    ],
)
def test_ws_upgrade_failures(
    srv: FaultServer, client: httpx.Client, name: str, status: int, ctype: str
) -> None:
    with (
        pytest.raises(WebSocketUpgradeError) as info,
        connect_ws(srv.url_for(name) + EXEC, client),
    ):
        pass
    assert info.value.response.status_code == status
    assert info.value.response.headers["content-type"] == ctype


def test_ws_route_without_upgrade_is_400(srv: FaultServer, client: httpx.Client) -> None:
    r = client.get(srv.url_for("ok") + EXEC)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"


# --------------------------------------------------------------------------------------
# Shutdown
# --------------------------------------------------------------------------------------


def test_stop_is_bounded_with_hung_handlers() -> None:
    threads_before = threading.active_count()
    server = FaultServer(hang_limit=60.0).start()
    outcome: list[BaseException | int] = []

    def hung_call(name: str, path: str) -> None:
        try:
            with _fresh_client(timeout=10.0) as c:
                outcome.append(c.get(server.url_for(name) + path).status_code)
        except BaseException as exc:
            outcome.append(exc)

    callers = [
        threading.Thread(target=hung_call, args=("hang", "/v1/capsules")),
        threading.Thread(target=hung_call, args=("sse-silent", "/v1/events/stream")),
        threading.Thread(target=hung_call, args=("drip", "/v1/capsules")),
    ]
    for t in callers:
        t.start()
    idle = socket.create_connection(("127.0.0.1", server.port))  # idle keep-alive
    try:
        assert server.wait_until(lambda: server.count() == 3, 2.0)
        start = time.monotonic()
        server.stop()
        assert time.monotonic() - start < 2.0
        assert server.open_connections() == 0
        for t in callers:
            t.join(3.0)
            assert not t.is_alive()
        assert len(outcome) == 3
        assert all(isinstance(o, httpx.TransportError) for o in outcome)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=0.5).close()
    finally:
        idle.close()
    assert server.errors() == []
    assert threading.active_count() == threads_before
    server.stop()  # idempotent


def test_stop_with_a_client_that_stopped_reading() -> None:
    server = FaultServer().start()
    key = server.key_of(server.url_for("huge-64"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=2.0) as s:
        s.sendall(f"GET /s/{key}/v1/capsules HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert s.recv(16).startswith(b"HTTP/1.1 200")
        time.sleep(0.2)  # the server is now blocked writing into full buffers
        start = time.monotonic()
        server.stop()
        assert time.monotonic() - start < 2.0
    assert server.open_connections() == 0
    assert server.errors() == []


def test_lifetime_stops_the_server_by_itself() -> None:
    server = FaultServer(lifetime=0.3).start()
    try:
        assert server.wait_until(lambda: not server.is_running, 2.0)
    finally:
        server.stop()
