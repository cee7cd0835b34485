"""Attacks on wrenn.local's API edge: every bad input is a 4xx envelope, never a 500.

One test per attack. Every loop is bounded, every socket and server a test
opens is closed by it, and everything stays on loopback.
"""

from __future__ import annotations

import inspect
import json
import logging
import select
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_ws import connect_ws

from wrenn.local import LocalServer
from wrenn.local._http import HeadDeadlineH11Protocol

from .conftest import needs_bwrap
from .helpers import create, destroy, error_of, sh

SURROGATE = '"\\ud800"'  # JSON text that decodes to a lone surrogate


def raw_post(http: httpx.Client, path: str, text: str) -> httpx.Response:
    return http.post(path, content=text.encode(), headers={"Content-Type": "application/json"})


def assert_400(r: httpx.Response) -> None:
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.json()["error"]["code"] == "invalid_request"


def capsule_ids(http: httpx.Client) -> set[str]:
    r = http.get("/v1/capsules")
    assert r.status_code == 200, r.text
    return {c["id"] for c in r.json()}


def test_lone_surrogate_metadata_is_400_and_list_survives(http: httpx.Client) -> None:
    before = capsule_ids(http)
    for body in (
        '{"metadata":{"k":' + SURROGATE + "}}",
        '{"metadata":{' + SURROGATE + ':"v"}}',
        '{"template":' + SURROGATE + "}",
    ):
        assert_400(raw_post(http, "/v1/capsules", body))
    # Nothing was left half-created, and the list still answers.
    assert capsule_ids(http) == before


def test_stored_unencodable_metadata_does_not_poison_list(
    server: LocalServer, http: httpx.Client
) -> None:
    capsule_id = create(http)
    try:
        # What an older server could have stored: the row must not break list for everyone.
        db = sqlite3.connect(str(server.state_dir / "wrenn-local.db"), timeout=10)
        try:
            with db:
                db.execute(
                    "UPDATE capsules SET metadata = ? WHERE id = ?",
                    ('{"k": "\\ud800"}', capsule_id),
                )
        finally:
            db.close()
        listed = {c["id"]: c for c in http.get("/v1/capsules").json()}
        assert listed[capsule_id]["metadata"]["k"] == "\ufffd"
        assert http.get(f"/v1/capsules/{capsule_id}").status_code == 200
    finally:
        destroy(http, capsule_id)


@pytest.mark.parametrize(
    "body",
    [
        {"vcpus": 2**63},
        {"vcpus": 2**64},
        {"vcpus": -1},
        {"vcpus": 10**6},
        {"memory_mb": 2**63},
        {"memory_mb": -5},
        {"timeout_sec": 2**63},
        {"timeout_sec": 2**40},
        {"vcpus": "2"},
        {"metadata": ["a"]},
        {"metadata": {"k": 1}},
    ],
)
def test_huge_numbers_and_wrong_types_on_create_are_400(
    http: httpx.Client, body: dict[str, Any]
) -> None:
    before = capsule_ids(http)
    assert_400(http.post("/v1/capsules", json=body))
    assert capsule_ids(http) == before


def test_huge_numbers_are_400(http: httpx.Client, capsule: str) -> None:
    for extra in ({"timeout_sec": 2**63}, {"timeout_sec": -1}, {"timeout_sec": "5"}):
        assert_400(http.post(f"/v1/capsules/{capsule}/exec", json={"cmd": "true", **extra}))
    for depth in (2**63, -1, "3", 1.5):
        r = http.post(f"/v1/capsules/{capsule}/files/list", json={"path": "/root", "depth": depth})
        assert_400(r)
    # A 2**63 literal that Python parses but Go (int64) cannot.
    assert_400(raw_post(http, "/v1/capsules", '{"vcpus": 9223372036854775808}'))


def test_deep_json_is_400(http: httpx.Client, capsule: str) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    assert_400(raw_post(http, "/v1/capsules", deep))
    assert_400(raw_post(http, "/v1/capsules", '{"metadata":' + deep + "}"))
    assert_400(raw_post(http, f"/v1/capsules/{capsule}/exec", '{"cmd":"true","args":' + deep + "}"))
    assert_400(raw_post(http, "/v1/snapshots", deep))


def test_list_where_an_object_is_expected_is_400(http: httpx.Client, capsule: str) -> None:
    for path in ("/v1/capsules", f"/v1/capsules/{capsule}/exec", "/v1/snapshots"):
        assert_400(http.post(path, json=[1, 2]))
        assert_400(http.post(path, json="str"))
    assert_400(http.post(f"/v1/capsules/{capsule}/exec", json={"cmd": "true", "envs": ["A"]}))
    assert_400(http.post(f"/v1/capsules/{capsule}/exec", json={"cmd": "true", "args": "x"}))
    assert_400(http.post(f"/v1/capsules/{capsule}/files/read", json={"path": ["/root"]}))


def test_env_names_with_nul_or_equals_are_400(http: httpx.Client, capsule: str) -> None:
    for envs in ({"A=B": "x"}, {"A\x00B": "x"}, {"": "x"}, {"A": "x\x00y"}):
        r = http.post(f"/v1/capsules/{capsule}/exec", json={"cmd": "true", "envs": envs})
        assert_400(r)


def test_nul_and_lone_surrogates_in_strings_are_400(http: httpx.Client, capsule: str) -> None:
    exec_path = f"/v1/capsules/{capsule}/exec"
    for body in (
        {"cmd": "tr\x00ue"},
        {"cmd": "true", "args": ["a\x00b"]},
        {"cmd": "true", "cwd": "/ro\x00ot"},
        {"cmd": "true", "background": True, "tag": "t\x00"},
    ):
        assert_400(http.post(exec_path, json=body))
    for key in ("cmd", "cwd", "tag"):
        assert_400(raw_post(http, exec_path, '{"cmd":"true","' + key + '":' + SURROGATE + "}"))
    assert_400(raw_post(http, exec_path, '{"cmd":"true","args":[' + SURROGATE + "]}"))
    for op in ("read", "list", "mkdir", "remove", "stream/read"):
        path = f"/v1/capsules/{capsule}/files/{op}"
        assert_400(http.post(path, json={"path": "/root/a\x00b"}))
        assert_400(raw_post(http, path, '{"path":' + SURROGATE + "}"))
    snap = '{"sandbox_id":"' + capsule + '","name":' + SURROGATE + "}"
    assert_400(raw_post(http, "/v1/snapshots", snap))
    # The capsule still works.
    r = http.post(exec_path, json={"cmd": "true"})
    assert r.status_code == 200 and r.json()["exit_code"] == 0


def test_odd_process_selectors_are_4xx(http: httpx.Client, capsule: str) -> None:
    base = f"/v1/capsules/{capsule}/processes/"
    for selector in ("9" * 30, "9" * 5000):
        assert_400(http.delete(base + selector))
    for selector in ("-1", "%C2%B2", "%D9%A1", "%C3%A9", "0", "4294967296"):
        r = http.delete(base + selector)
        assert r.status_code == 404, (selector, r.text)
        assert r.json()["error"]["code"] == "not_found"
    # The empty selector is no route: Starlette redirects to the (GET-only) list.
    assert http.delete(base).status_code in (307, 404, 405)


def _error_frame(ws: Any) -> str:
    frame = ws.receive_json(timeout=10)
    assert frame["type"] == "error", frame
    return str(frame["data"])


def test_ws_start_frame_with_bad_values_gets_an_error_frame(
    http: httpx.Client, capsule: str
) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    exec_frames = [
        '{"type":"start","cmd":' + SURROGATE + "}",
        '{"type":"start","cmd":"true","args":["a\\u0000"]}',
        '{"type":"start","cmd":"true","envs":{"A=B":"x"}}',
        '{"type":"start","cmd":"true","envs":{"A":1}}',
        '{"type":"start","cmd":"true","cwd":' + SURROGATE + "}",
        '{"type":"start","cmd":"true","args":' + deep + "}",
        "[1,2]",
    ]
    for text in exec_frames:
        with connect_ws(f"/v1/capsules/{capsule}/exec/stream", http) as ws:
            ws.send_text(text)
            assert _error_frame(ws)
    pty_frames = [
        '{"type":"start","cols":9223372036854775808}',
        '{"type":"start","cols":70000}',
        '{"type":"start","rows":-1}',
        '{"type":"start","cols":"80"}',
        '{"type":"start","cmd":"/bin/sh","args":[' + SURROGATE + "]}",
        '{"type":"start","envs":{"A\\u0000":"x"}}',
        '{"type":"connect","tag":' + SURROGATE + "}",
        '{"type":"connect","tag":["x"]}',
    ]
    for text in pty_frames:
        with connect_ws(f"/v1/capsules/{capsule}/pty", http) as ws:
            ws.send_text(text)
            assert _error_frame(ws)
    for selector in ("9" * 30, "-1", "%C2%B2"):
        with connect_ws(f"/v1/capsules/{capsule}/processes/{selector}/stream", http) as ws:
            assert "process" in _error_frame(ws)
    assert http.get(f"/v1/capsules/{capsule}/processes").json() == {"processes": []}


def test_json_body_over_the_limit_is_413(http: httpx.Client, capsule: str) -> None:
    big = json.dumps({"metadata": {"k": "x" * (2 * 1024 * 1024)}}).encode()
    before = capsule_ids(http)
    r = http.post("/v1/capsules", content=big, headers={"Content-Type": "application/json"})
    assert error_of(r)[:2] == (413, "too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(3):
            yield b" " * (512 * 1024)

    r = http.post(f"/v1/capsules/{capsule}/exec", content=chunks())
    assert error_of(r)[:2] == (413, "too_large")
    assert capsule_ids(http) == before


def _half_open(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # never the final CRLF
        socks.append(s)
    return socks


def test_half_open_connections_do_not_starve_health(server: LocalServer) -> None:
    socks: list[socket.socket] = []
    try:
        socks = _half_open(server.port, 300)
        started = time.monotonic()
        with httpx.Client(base_url=server.base_url, timeout=5) as fresh:
            assert fresh.get("/health").status_code == 200
        assert time.monotonic() - started < 5
    finally:
        for s in socks:
            s.close()


def test_half_open_connection_is_closed_after_the_header_timeout(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(HeadDeadlineH11Protocol, "header_timeout", 0.5)
    (s,) = _half_open(server.port, 1)
    try:
        s.settimeout(10)
        assert s.recv(100) == b""  # closed by the server, well before 10 s
    finally:
        s.close()


def test_a_request_body_that_stops_moving_is_closed(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A head that promises a body, then a byte, then nothing (a slow-loris body).
    caplog.set_level(logging.DEBUG, logger="wrenn.local")
    monkeypatch.setattr(HeadDeadlineH11Protocol, "body_idle_timeout", 0.5)
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        s.sendall(
            b"POST /v1/capsules HTTP/1.1\r\nHost: x\r\nX-API-Key: "
            + server.api_key.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        assert s.recv(100) == b""  # closed by the server, well before 10 s
    finally:
        s.close()
    # The handler that was reading the body ends quietly: a client that went away is
    # not an "Exception in ASGI application" with a traceback.
    for _ in range(50):  # 5 s at most
        if any("client disconnected" in r.getMessage() for r in caplog.records):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the handler did not notice the disconnection")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_request_body_that_drips_is_closed_at_the_body_deadline(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(HeadDeadlineH11Protocol, "body_idle_timeout", 0.4)
    monkeypatch.setattr(HeadDeadlineH11Protocol, "body_timeout", 1.0)
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        s.sendall(
            b"POST /v1/capsules HTTP/1.1\r\nHost: x\r\nX-API-Key: "
            + server.api_key.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        )
        # A byte every 0.2 s keeps it under the idle limit; the total limit ends it.
        # The server closes with some of our bytes unread, so the close may arrive as
        # a reset (ECONNRESET on the next send or recv) rather than as EOF.
        closed = False
        for _ in range(40):  # 8 s at most
            try:
                s.sendall(b" ")
                ready, _, _ = select.select([s], [], [], 0.2)
                if ready and s.recv(100) == b"":
                    closed = True
                    break
            except OSError:
                closed = True
                break
        assert closed
    finally:
        s.close()


def test_the_uvicorn_internals_the_deadlines_rely_on_exist() -> None:
    from uvicorn.protocols.http.flow_control import FlowControl
    from uvicorn.protocols.http.h11_impl import H11Protocol

    for name in ("connection_made", "data_received", "handle_events", "connection_lost"):
        assert callable(getattr(H11Protocol, name)), name
    assert "read_paused" in vars(FlowControl(_FakeTransport()))  # type: ignore[arg-type]
    # The file's text, not inspect.getsource: that parses the module with ast, which
    # CPython 3.11 does not make safe against a traceback formatted in a server thread
    # at the same moment ("AST constructor recursion depth mismatch").
    source = Path(inspect.getfile(H11Protocol)).read_text(encoding="utf-8")
    for attribute in ("self.conn", "self.loop", "self.transport", "self.flow", "self.client"):
        assert attribute in source, attribute
    import uvicorn

    state = uvicorn.Server(uvicorn.Config(app=None)).server_state  # type: ignore[arg-type]
    assert isinstance(state.connections, set)


class _FakeTransport:
    pass


def test_idle_websocket_without_start_frame_is_closed() -> None:
    with LocalServer(isolation="none", ws_start_timeout=0.5) as srv:
        headers = {"X-API-Key": srv.api_key}
        with httpx.Client(base_url=srv.base_url, headers=headers, timeout=10) as http:
            capsule_id = create(http)
            try:
                for route in ("exec/stream", "pty"):
                    started = time.monotonic()
                    with connect_ws(f"/v1/capsules/{capsule_id}/{route}", http) as ws:
                        assert "no start message" in _error_frame(ws)
                    assert time.monotonic() - started < 5
            finally:
                destroy(http, capsule_id)


def test_kernel_proxy_requires_the_key(server: LocalServer, http: httpx.Client) -> None:
    from httpx_ws import WebSocketUpgradeError

    from wrenn._code_runner import proxy_token

    capsule_id = create(http)
    other = create(http)
    try:
        host = {"Host": f"8888-{capsule_id}.127.0.0.1:{server.port}"}
        # No API key and no token: any local user could otherwise drive the kernel.
        with httpx.Client(base_url=server.base_url, headers=host, timeout=10) as anon:
            for token in (None, "", "0" * 64, proxy_token(server.api_key, other)):
                headers = {} if token is None else {"X-Wrenn-Proxy-Token": token}
                for method, path in (("GET", "/api/kernels"), ("POST", "/api/kernels")):
                    r = anon.request(method, path, headers=headers)
                    assert r.status_code == 401, (token, r.text)
            with (
                pytest.raises(WebSocketUpgradeError) as refused,
                connect_ws("/api/kernels/x/channels", anon),
            ):
                pass
            assert refused.value.response.status_code == 401
            # The right token passes the check (this capsule is no code runner: 404).
            ok = {"X-Wrenn-Proxy-Token": proxy_token(server.api_key, capsule_id)}
            r = anon.get("/api/kernels", headers=ok)
            assert r.status_code == 404 and "8888" in r.text
            # The team key itself is still refused at a capsule URL.
            r = anon.get("/api/kernels", headers={**ok, "X-API-Key": server.api_key})
            assert r.status_code == 403
    finally:
        destroy(http, capsule_id)
        destroy(http, other)


def test_sdk_and_server_derive_the_same_proxy_token() -> None:
    from wrenn._code_runner import proxy_token as sdk_token
    from wrenn.local._auth import proxy_token as server_token

    assert sdk_token("wrn_" + "a" * 32, "cl-" + "b" * 25) == server_token(
        "wrn_" + "a" * 32, "cl-" + "b" * 25
    )


@needs_bwrap
def test_capsule_root_is_read_only_but_the_writable_dirs_are_not(
    server: LocalServer, http: httpx.Client, capsule: str
) -> None:
    # The root is a tmpfs in host RAM that no limit covers: writes there are refused.
    assert server.isolation == "bwrap"
    out = sh(http, capsule, "touch /x 2>&1; mkdir /opt/y 2>&1; echo rc=$?")["stdout"]
    assert "Read-only file system" in out and out.endswith("rc=1\n")
    for d in ("/root", "/tmp", "/home", "/workspace"):
        assert sh(http, capsule, f"touch {d}/ok && echo yes")["stdout"] == "yes\n"
