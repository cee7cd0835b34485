# tests/local/openapi.yaml: byte-identical copy of ../shared/wrenn-api/openapi.yaml, the open-source Wrenn server's spec (wrennhq/wrenn internal/api/openapi.yaml, info.version 0.1.4, Apache-2.0).
"""Conformance of wrenn.local to the platform's OpenAPI spec (v0.1.4).

Every operation of the 26 API-key endpoints (PROTOCOL.md §1.2), plus ``/health``
and the SSE route, is driven through realistic sequences.  Each answer is
checked by :mod:`tests.local.openapi_check`: the status must be listed for the
operation and the JSON body must validate against the response schema.  Known,
intentional departures are the :data:`ALLOW` list below; each must actually
occur (see the last test), so the list cannot go stale.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_ws import WebSocketDisconnect, WebSocketSession, connect_ws
from wsproto.events import BytesMessage, TextMessage

from wrenn.local import LocalServer

from .openapi_check import (
    PROCESS_FRAMES,
    PTY_FRAMES,
    SPEC_PATH,
    Conformance,
    Difference,
    Observation,
    check_frame,
    load_spec,
    ops,
)

pytestmark = pytest.mark.local

SHARED_SPEC = Path(__file__).resolve().parents[2].parent / "shared" / "wrenn-api" / "openapi.yaml"
UNKNOWN = "cl-" + "0" * 25
MALFORMED = "cl-NOT-AN-ID"

# PROTOCOL.md §1.2: the 26 endpoints reachable with a team API key.
API_KEY_OPERATIONS = (
    "POST /v1/capsules",
    "GET /v1/capsules",
    "GET /v1/capsules/stats",
    "GET /v1/capsules/usage",
    "GET /v1/capsules/{id}",
    "DELETE /v1/capsules/{id}",
    "POST /v1/capsules/{id}/exec",
    "POST /v1/capsules/{id}/ping",
    "POST /v1/capsules/{id}/pause",
    "POST /v1/capsules/{id}/resume",
    "POST /v1/capsules/{id}/files/write",
    "POST /v1/capsules/{id}/files/read",
    "POST /v1/capsules/{id}/files/stream/write",
    "POST /v1/capsules/{id}/files/stream/read",
    "POST /v1/capsules/{id}/files/list",
    "POST /v1/capsules/{id}/files/mkdir",
    "POST /v1/capsules/{id}/files/remove",
    "GET /v1/capsules/{id}/metrics",
    "GET /v1/capsules/{id}/processes",
    "DELETE /v1/capsules/{id}/processes/{selector}",
    "GET /v1/capsules/{id}/exec/stream",
    "GET /v1/capsules/{id}/pty",
    "GET /v1/capsules/{id}/processes/{selector}/stream",
    "POST /v1/snapshots",
    "GET /v1/snapshots",
    "DELETE /v1/snapshots/{name}",
)
WS_OPERATIONS = tuple(o for o in API_KEY_OPERATIONS if o.endswith(("/stream", "/pty")))
ID_OPERATIONS = tuple(o for o in API_KEY_OPERATIONS if "{id}" in o and o not in WS_OPERATIONS)
MISSING_PATH_OPS = ops(
    "POST /v1/capsules/{id}/files/read",
    "POST /v1/capsules/{id}/files/stream/read",
    "POST /v1/capsules/{id}/files/list",
    "POST /v1/capsules/{id}/files/remove",
)

# Known departures from openapi.yaml v0.1.4.  Every entry must be exercised by this
# module (test_every_operation_and_difference_was_exercised), so it stays honest.
ALLOW = [
    Difference(
        "file-type-unknown",
        "a FIFO, socket or device lists as type 'unknown', outside the spec's FileEntry enum, as the platform's agent does (PROTOCOL §1.2.3)",
        kind="schema",
        operations=ops("POST /v1/capsules/{id}/files/list"),
        detail="enum=['file', 'directory', 'symlink'] got 'unknown'",
    ),
    Difference(
        "health-route",
        "GET /health is registered by the platform (server.go) but absent from the spec (PROTOCOL §1.4)",
        kind="route",
        operations=ops("GET /health"),
    ),
    Difference(
        "events-stream-route",
        "GET /v1/events/stream is the SSE route of the newer protocol SDK 0.3.0 speaks; not in v0.1.4 (PROTOCOL §2.6)",
        kind="route",
        operations=ops("GET /v1/events/stream"),
    ),
    Difference(
        "bad-request-ref",
        "the spec references #/components/responses/BadRequest without defining it (PROTOCOL §1.4 #12): any Error envelope",
        kind="spec",
        statuses=frozenset({400}),
        codes=frozenset({"invalid_request"}),
        detail="#/components/responses/BadRequest",
    ),
    Difference(
        "401-undeclared",
        "operations declare apiKeyAuth security but no 401 response; a missing or wrong key is 401 (PROTOCOL §1.1)",
        kind="status",
        statuses=frozenset({401}),
        codes=frozenset({"unauthorized"}),
    ),
    Difference(
        "400-malformed-id",
        "the platform rejects an {id} that is not cl-+25 base36 with 400 before any lookup (PROTOCOL §1.1)",
        kind="status",
        operations=frozenset(ID_OPERATIONS + WS_OPERATIONS),
        statuses=frozenset({400}),
        codes=frozenset({"invalid_request"}),
        message="invalid sandbox ID",
    ),
    Difference(
        "400-invalid-input",
        "malformed JSON/multipart, a missing required field or an unsafe name is 400 where the spec lists none (PROTOCOL §1.1, §1.2.4)",
        kind="status",
        statuses=frozenset({400}),
        codes=frozenset({"invalid_request"}),
    ),
    Difference(
        "404-undeclared",
        "an unknown capsule or template is 404 on operations whose spec omits 404 (PROTOCOL §1.2 common errors, §3.3)",
        kind="status",
        operations=ops(
            "POST /v1/capsules",
            "DELETE /v1/capsules/{id}",
            "POST /v1/capsules/{id}/pause",
            "POST /v1/capsules/{id}/resume",
            "POST /v1/capsules/{id}/files/write",
            "POST /v1/snapshots",
        ),
        statuses=frozenset({404}),
        codes=frozenset({"not_found"}),
    ),
    Difference(
        "409-undeclared",
        "files/read on a capsule that is not running is 409 invalid_state like every data-plane route; the spec omits it (PROTOCOL §1.2)",
        kind="status",
        operations=ops("POST /v1/capsules/{id}/files/read"),
        statuses=frozenset({409}),
        codes=frozenset({"invalid_state"}),
    ),
    Difference(
        "403-platform-template",
        "platform templates (minimal, minimal-ubuntu) cannot be deleted: 403 forbidden (README; PROTOCOL §1.2.4)",
        kind="status",
        operations=ops("DELETE /v1/snapshots/{name}"),
        statuses=frozenset({403}),
        codes=frozenset({"forbidden"}),
    ),
    Difference(
        "502-missing-path",
        "a missing path or a non-directory is 502 agent_error, as the real agent wraps it (README; PROTOCOL §1.4 #4)",
        kind="status",
        operations=MISSING_PATH_OPS,
        statuses=frozenset({502}),
        codes=frozenset({"agent_error"}),
    ),
    Difference(
        "502-exec-agent-error",
        "exec of a missing command or past timeout_sec is 502 agent_error (README 'Start failures', 'Exec timeout')",
        kind="status",
        operations=ops("POST /v1/capsules/{id}/exec"),
        statuses=frozenset({502}),
        codes=frozenset({"agent_error"}),
    ),
    Difference(
        "ws-inband-errors",
        "WS routes document HTTP 404/409; the platform upgrades and sends an in-band error frame (PROTOCOL §1.4 #10)",
        kind="ws",
        operations=ops("GET /v1/capsules/{id}/exec/stream", "GET /v1/capsules/{id}/pty"),
        detail="in-band error instead of HTTP",
    ),
    Difference(
        "pty-binary-output",
        "PTY output is sent as binary frames (newer protocol SDK 0.3.0 speaks), not base64 'output' JSON (README)",
        kind="ws",
        operations=ops("GET /v1/capsules/{id}/pty"),
        detail="binary output frame",
    ),
    Difference(
        "snapshot-keeps-source",
        "POST /v1/snapshots leaves the source capsule paused (v0.1.5 behaviour); the spec says it is destroyed (README; PROTOCOL §1.4 #2)",
        kind="behaviour",
        operations=ops("POST /v1/snapshots"),
        detail="source capsule paused",
    ),
]

# Routes the spec lacks: schemas transcribed from PROTOCOL.md §1.2 and §2.6.
HEALTH_SCHEMA = {
    "type": "object",
    "required": ["status", "version"],
    "properties": {"status": {"const": "ok"}, "version": {"type": "string"}},
}
SSE_EVENT_SCHEMA = {
    "type": "object",
    "required": ["event", "resource", "actor", "timestamp"],
    "properties": {
        "event": {
            "enum": [
                "connected",
                "capsule.create",
                "capsule.pause",
                "capsule.resume",
                "capsule.destroy",
                "capsule.state.changed",
                "template.snapshot.create",
                "template.snapshot.delete",
                "host.up",
                "host.down",
            ]
        },
        "outcome": {"enum": ["success", "error"]},
        "resource": {
            "type": "object",
            "properties": {"id": {"type": "string"}, "type": {"type": "string"}},
        },
        "actor": {
            "type": "object",
            "properties": {"type": {"enum": ["user", "api_key", "system"]}},
        },
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "timestamp": {"type": "string", "format": "date-time"},
    },
}


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def srv() -> Iterator[LocalServer]:
    with LocalServer(metrics_interval=0.2) as server:
        yield server


@pytest.fixture(scope="module")
def conf() -> Conformance:
    return Conformance(load_spec(SPEC_PATH), ALLOW)


@pytest.fixture(scope="module")
def http(srv: LocalServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=srv.base_url, headers={"X-API-Key": srv.api_key}, timeout=30
    ) as client:
        yield client


class Api:
    """Send one operation, assert the expected status, validate it against the spec."""

    def __init__(self, http: httpx.Client, conf: Conformance) -> None:
        self.http = http
        self.conf = conf

    def __call__(
        self,
        method: str,
        template: str,
        expect: int,
        *,
        client: httpx.Client | None = None,
        id: str | None = None,
        selector: str | int | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        url = template.format(id=id, selector=selector, name=name)
        r = (client or self.http).request(method, url, **kwargs)
        assert r.status_code == expect, f"{method} {url}: {r.status_code} {r.text[:300]}"
        self.conf.check(method, template, r)
        return r

    def create(self, **body: Any) -> str:
        return str(self("POST", "/v1/capsules", 201, json=body).json()["id"])

    def destroy(self, capsule_id: str) -> None:
        self("DELETE", "/v1/capsules/{id}", 204, id=capsule_id)

    def sh(self, capsule_id: str, script: str) -> dict[str, Any]:
        r = self(
            "POST",
            "/v1/capsules/{id}/exec",
            200,
            id=capsule_id,
            json={"cmd": "/bin/sh", "args": ["-c", script]},
        )
        return r.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def api(http: httpx.Client, conf: Conformance) -> Api:
    return Api(http, conf)


@pytest.fixture
def capsule(api: Api) -> Iterator[str]:
    capsule_id = api.create()
    try:
        yield capsule_id
    finally:
        api.http.delete(f"/v1/capsules/{capsule_id}")


def multipart(path: str, data: bytes) -> dict[str, Any]:
    return {"data": {"path": path}, "files": {"file": ("upload.bin", data)}}


def ws_upgrade_headers(srv: LocalServer) -> dict[str, str]:
    return {
        "X-API-Key": srv.api_key,
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
    }


def read_frames(
    conf: Conformance,
    ws: WebSocketSession,
    operation: str,
    frames: dict[str, dict[str, Any]],
    until: str = "exit",
) -> list[dict[str, Any]]:
    """JSON frames up to and including one of type ``until`` (or ``error``), each validated."""
    out: list[dict[str, Any]] = []
    for _ in range(200):
        event = ws.receive(timeout=10)
        if isinstance(event, BytesMessage):
            conf.observe(Observation("ws", operation, detail="binary output frame"))
            continue
        assert isinstance(event, TextMessage), event
        frame = json.loads(event.data)
        check_frame(conf, operation, frame, frames)
        out.append(frame)
        if frame["type"] in (until, "error"):
            return out
    raise AssertionError(f"no {until!r} frame: {out}")


def assert_closed(ws: WebSocketSession) -> None:
    with pytest.raises(WebSocketDisconnect):
        for _ in range(10):
            ws.receive(timeout=10)


# --------------------------------------------------------------------------- tests
def test_spec_copy_is_byte_identical() -> None:
    if not SHARED_SPEC.exists():
        pytest.skip(f"{SHARED_SPEC} is not present")
    assert SPEC_PATH.read_bytes() == SHARED_SPEC.read_bytes()


def test_spec_has_every_api_key_operation(conf: Conformance) -> None:
    missing = [o for o in API_KEY_OPERATIONS if not conf.has_operation(o)]
    assert missing == []
    assert not conf.has_operation("GET /health")
    assert not conf.has_operation("GET /v1/events/stream")


def test_health(srv: LocalServer, conf: Conformance) -> None:
    with httpx.Client(base_url=srv.base_url) as anonymous:  # no key needed
        r = anonymous.get("/health")
    assert r.status_code == 200
    conf.check("GET", "/health", r, local_schema=HEALTH_SCHEMA)


def test_capsule_lifecycle(api: Api) -> None:
    cid = api.create(template="minimal-ubuntu", vcpus=1, memory_mb=256, timeout_sec=0)
    try:
        listed = api("GET", "/v1/capsules", 200).json()
        assert cid in [c["id"] for c in listed]
        assert api("GET", "/v1/capsules/{id}", 200, id=cid).json()["status"] == "running"
        api("POST", "/v1/capsules/{id}/ping", 204, id=cid)
        time.sleep(0.5)  # a few metric samples
        for rng in ("5m", "10m", "1h", "2h", "6h", "12h", "24h"):
            r = api("GET", "/v1/capsules/{id}/metrics", 200, id=cid, params={"range": rng})
            assert r.json()["range"] == rng
        points = api("GET", "/v1/capsules/{id}/metrics", 200, id=cid).json()["points"]
        assert points, "no metric samples"
        api("GET", "/v1/capsules/{id}/metrics", 400, id=cid, params={"range": "3m"})
        assert api("POST", "/v1/capsules/{id}/pause", 200, id=cid).json()["status"] == "paused"
        api("POST", "/v1/capsules/{id}/pause", 409, id=cid)
        api("POST", "/v1/capsules/{id}/ping", 409, id=cid)
        api("GET", "/v1/capsules/{id}/metrics", 200, id=cid)  # stored samples
        assert api("POST", "/v1/capsules/{id}/resume", 200, id=cid).json()["status"] == "running"
        api("POST", "/v1/capsules/{id}/resume", 409, id=cid)
    finally:
        api.destroy(cid)
    assert api("GET", "/v1/capsules/{id}", 200, id=cid).json()["status"] == "stopped"
    api.destroy(cid)  # idempotent
    api("GET", "/v1/capsules/{id}/metrics", 404, id=cid)
    api("POST", "/v1/capsules/{id}/resume", 409, id=cid)


def test_stats_and_usage(api: Api) -> None:
    for rng in ("5m", "1h", "6h", "24h", "30d"):
        r = api("GET", "/v1/capsules/stats", 200, params={"range": rng})
        assert r.json()["range"] == rng
    api("GET", "/v1/capsules/stats", 200)
    api("GET", "/v1/capsules/stats", 400, params={"range": "2d"})
    api("GET", "/v1/capsules/usage", 200)
    r = api("GET", "/v1/capsules/usage", 200, params={"from": "2026-01-01", "to": "2026-01-31"})
    assert len(r.json()["points"]) == 31
    api("GET", "/v1/capsules/usage", 400, params={"from": "01/02/2026"})
    api("GET", "/v1/capsules/usage", 400, params={"from": "2026-02-01", "to": "2026-01-01"})


def test_exec_and_processes(api: Api, capsule: str) -> None:
    out = api.sh(capsule, "echo out; echo err >&2; exit 3")
    assert (out["stdout"], out["stderr"], out["exit_code"]) == ("out\n", "err\n", 3)
    assert api.sh(capsule, r"printf '\377'")["encoding"] == "base64"
    r = api(
        "POST",
        "/v1/capsules/{id}/exec",
        200,
        id=capsule,
        json={"cmd": "/bin/sh", "args": ["-c", "echo $V"], "envs": {"V": "x"}, "timeout_sec": 5},
    )
    assert r.json()["stdout"] == "x\n"
    bg = {"cmd": "/bin/sleep", "args": ["30"], "background": True}
    first = api("POST", "/v1/capsules/{id}/exec", 202, id=capsule, json=bg).json()
    tagged = api(
        "POST", "/v1/capsules/{id}/exec", 202, id=capsule, json={**bg, "tag": "conf-sleeper"}
    ).json()
    assert tagged["tag"] == "conf-sleeper"
    procs = api("GET", "/v1/capsules/{id}/processes", 200, id=capsule).json()["processes"]
    assert {first["pid"], tagged["pid"]} <= {p["pid"] for p in procs}
    kill = "/v1/capsules/{id}/processes/{selector}"
    api("DELETE", kill, 204, id=capsule, selector=first["pid"], params={"signal": "SIGTERM"})
    api("DELETE", kill, 204, id=capsule, selector="conf-sleeper", params={"signal": "SIGKILL"})
    api("DELETE", kill, 404, id=capsule, selector=999999)
    api("DELETE", kill, 404, id=capsule, selector="no-such-tag")
    # Documented agent errors (502) and bad requests (400).
    api("POST", "/v1/capsules/{id}/exec", 502, id=capsule, json={"cmd": "/no/such/binary"})
    api(
        "POST",
        "/v1/capsules/{id}/exec",
        502,
        id=capsule,
        json={"cmd": "/bin/sleep", "args": ["5"], "timeout_sec": 1},
    )
    api("POST", "/v1/capsules/{id}/exec", 400, id=capsule, json={})
    api("POST", "/v1/capsules/{id}/exec", 400, id=capsule, json={"cmd": "true", "args": "x"})
    api("POST", "/v1/capsules/{id}/exec", 400, id=capsule, content=b"{not json")


def test_files(api: Api, capsule: str) -> None:
    payload = bytes(range(256)) * 64
    api("POST", "/v1/capsules/{id}/files/mkdir", 200, id=capsule, json={"path": "/root/conf"})
    api("POST", "/v1/capsules/{id}/files/mkdir", 409, id=capsule, json={"path": "/root/conf"})
    api(
        "POST",
        "/v1/capsules/{id}/files/write",
        204,
        id=capsule,
        **multipart("/root/conf/a.bin", payload),
    )
    r = api(
        "POST", "/v1/capsules/{id}/files/read", 200, id=capsule, json={"path": "/root/conf/a.bin"}
    )
    assert r.content == payload
    api(
        "POST",
        "/v1/capsules/{id}/files/stream/write",
        204,
        id=capsule,
        **multipart("/root/conf/sub/b.txt", b"streamed\n"),
    )
    with api.http.stream(
        "POST",
        f"/v1/capsules/{capsule}/files/stream/read",
        json={"path": "/root/conf/sub/b.txt"},
    ) as resp:
        resp.read()
    assert resp.status_code == 200 and resp.content == b"streamed\n"
    api.conf.check("POST", "/v1/capsules/{id}/files/stream/read", resp)
    api.sh(capsule, "ln -s sub/b.txt $HOME/conf/link; ln -s /nowhere $HOME/conf/dangling")
    lst = "/v1/capsules/{id}/files/list"
    for depth in (None, 0, 1, 2):
        body: dict[str, Any] = {"path": "/root/conf"}
        if depth is not None:
            body["depth"] = depth
        entries = api("POST", lst, 200, id=capsule, json=body).json()["entries"]
        assert {"a.bin", "sub", "link", "dangling"} <= {e["name"] for e in entries}
    assert "b.txt" in {e["name"] for e in entries}  # depth 2 recursed
    api("POST", "/v1/capsules/{id}/files/remove", 204, id=capsule, json={"path": "/root/conf/sub"})
    # Documented 502s for missing paths and a non-directory.
    missing = {"path": "/root/conf/missing"}
    api("POST", "/v1/capsules/{id}/files/read", 502, id=capsule, json=missing)
    api("POST", lst, 502, id=capsule, json=missing)
    api("POST", lst, 502, id=capsule, json={"path": "/root/conf/a.bin"})
    api("POST", "/v1/capsules/{id}/files/remove", 502, id=capsule, json=missing)
    with api.http.stream("POST", f"/v1/capsules/{capsule}/files/stream/read", json=missing) as resp:
        resp.read()
    assert resp.status_code == 502
    api.conf.check("POST", "/v1/capsules/{id}/files/stream/read", resp)
    # Malformed bodies: 400.
    api("POST", "/v1/capsules/{id}/files/write", 400, id=capsule, content=b"raw")
    api("POST", "/v1/capsules/{id}/files/stream/write", 400, id=capsule, json={"path": "/x"})
    api("POST", "/v1/capsules/{id}/files/read", 400, id=capsule, json={})
    api("POST", lst, 400, id=capsule, json={"path": "/root", "depth": "deep"})
    api("POST", "/v1/capsules/{id}/files/mkdir", 400, id=capsule, content=b"[]")
    api("POST", "/v1/capsules/{id}/files/remove", 400, id=capsule, content=b"")


def test_files_write_over_100_mib_is_413(api: Api, capsule: str) -> None:
    boundary = "conformance"

    def body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="path"\r\n\r\n/root/big\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\n'
        ).encode()
        chunk = b"\0" * (1 << 20)
        for _ in range(101):
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    r = api(
        "POST",
        "/v1/capsules/{id}/files/write",
        413,
        id=capsule,
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.json()["error"]["code"] == "too_large"


def test_files_list_of_a_fifo(api: Api, capsule: str) -> None:
    api.sh(capsule, "mkdir $HOME/fifo && mkfifo $HOME/fifo/pipe")
    api("POST", "/v1/capsules/{id}/files/list", 200, id=capsule, json={"path": "/root/fifo"})


def test_snapshots(api: Api) -> None:
    source = api.create()
    try:
        api(
            "POST",
            "/v1/capsules/{id}/files/write",
            204,
            id=source,
            **multipart("/root/kept.txt", b"kept\n"),
        )
        tpl = api(
            "POST", "/v1/snapshots", 201, json={"sandbox_id": source, "name": "conf-snap"}
        ).json()
        assert (tpl["name"], tpl["type"]) == ("conf-snap", "snapshot")
        status = api("GET", "/v1/capsules/{id}", 200, id=source).json()["status"]
        assert status in ("paused", "stopped")
        if status == "paused":
            api.conf.observe(
                Observation("behaviour", "POST /v1/snapshots", detail="source capsule paused")
            )
        names = [t["name"] for t in api("GET", "/v1/snapshots", 200).json()]
        assert {"conf-snap", "minimal", "minimal-ubuntu"} <= set(names)
        for kind in ("snapshot", "base"):
            listed = api("GET", "/v1/snapshots", 200, params={"type": kind}).json()
            assert listed and {t["type"] for t in listed} == {kind}
        taken = {"sandbox_id": source, "name": "conf-snap"}
        assert api("POST", "/v1/snapshots", 409, json=taken).json()["error"]["code"] == (
            "template_name_taken"
        )
        api("POST", "/v1/snapshots", 201, json=taken, params={"overwrite": "true"})
        reserved = {"sandbox_id": source, "name": "minimal"}
        api("POST", "/v1/snapshots", 409, json=reserved)
        api("POST", "/v1/snapshots", 201, json={"sandbox_id": source})  # generated name
        clone = api.create(template="conf-snap")
        try:
            r = api(
                "POST",
                "/v1/capsules/{id}/files/read",
                200,
                id=clone,
                json={"path": "/root/kept.txt"},
            )
            assert r.content == b"kept\n"
        finally:
            api.destroy(clone)
    finally:
        api.destroy(source)
    api("POST", "/v1/snapshots", 409, json={"sandbox_id": source, "name": "conf-late"})
    api("POST", "/v1/snapshots", 404, json={"sandbox_id": UNKNOWN, "name": "conf-none"})
    api("POST", "/v1/snapshots", 400, json={})
    api("POST", "/v1/snapshots", 400, json={"sandbox_id": MALFORMED})
    for t in api("GET", "/v1/snapshots", 200, params={"type": "snapshot"}).json():
        api("DELETE", "/v1/snapshots/{name}", 204, name=t["name"])
    api("DELETE", "/v1/snapshots/{name}", 404, name="conf-snap")
    api("DELETE", "/v1/snapshots/{name}", 403, name="minimal")
    api("DELETE", "/v1/snapshots/{name}", 403, name="minimal-ubuntu")
    api("DELETE", "/v1/snapshots/{name}", 400, name="-bad.name")


def test_create_errors(api: Api) -> None:
    api("POST", "/v1/capsules", 400, content=b"{oops")
    api("POST", "/v1/capsules", 400, content=b"")
    api("POST", "/v1/capsules", 400, json={"template": "no spaces allowed"})
    api("POST", "/v1/capsules", 400, json={"vcpus": "two"})
    api("POST", "/v1/capsules", 404, json={"template": "no-such-template"})


def test_auth_errors(srv: LocalServer, api: Api) -> None:
    with httpx.Client(base_url=srv.base_url, timeout=10) as anonymous:
        api("GET", "/v1/capsules", 401, client=anonymous)
        api("GET", "/v1/snapshots", 401, client=anonymous, headers={"X-API-Key": "wrn_" + "0" * 32})
        api("POST", "/v1/capsules", 401, client=anonymous, json={})
        api("GET", "/v1/capsules/{id}", 401, client=anonymous, id=UNKNOWN)
        api(
            "GET",
            "/v1/capsules",
            200,
            client=anonymous,
            headers={"Authorization": f"Bearer {srv.api_key}"},
        )


# Minimal valid requests for every REST {id} operation.
def _id_requests() -> list[tuple[str, str, dict[str, Any]]]:
    js = {"path": "/root/x"}
    out: list[tuple[str, str, dict[str, Any]]] = []
    for name in ID_OPERATIONS:
        method, template = name.split(" ", 1)
        kwargs: dict[str, Any] = {"selector": 1} if "{selector}" in template else {}
        if template.endswith(("/files/write", "/files/stream/write")):
            kwargs.update(multipart("/root/x", b"x"))
        elif template.endswith("/exec"):
            kwargs["json"] = {"cmd": "true"}
        elif "/files/" in template:
            kwargs["json"] = js
        out.append((method, template, kwargs))
    return out


def test_malformed_and_unknown_ids(api: Api) -> None:
    for method, template, kwargs in _id_requests():
        r = api(method, template, 400, id=MALFORMED, **kwargs)
        assert r.json()["error"]["message"] == "invalid sandbox ID"
        r = api(method, template, 404, id=UNKNOWN, **kwargs)
        assert r.json()["error"]["code"] == "not_found"


def test_not_running_is_409(api: Api, capsule: str) -> None:
    api("POST", "/v1/capsules/{id}/pause", 200, id=capsule)
    allowed_200 = {"GET /v1/capsules/{id}", "GET /v1/capsules/{id}/metrics"}
    for method, template, kwargs in _id_requests():
        name = f"{method} {template}"
        if name in allowed_200 or name.endswith("/resume"):
            continue
        if name == "DELETE /v1/capsules/{id}":
            continue  # destroy works in any state
        r = api(method, template, 409, id=capsule, **kwargs)
        assert r.json()["error"]["code"] == "invalid_state", name


def test_exec_stream(api: Api, capsule: str) -> None:
    op = "GET /v1/capsules/{id}/exec/stream"
    with connect_ws(f"/v1/capsules/{capsule}/exec/stream", api.http) as ws:
        assert ws.response is not None
        api.conf.check("GET", "/v1/capsules/{id}/exec/stream", ws.response)
        ws.send_json({"type": "start", "cmd": "/bin/sh", "args": ["-c", "echo o; echo e >&2"]})
        frames = read_frames(api.conf, ws, op, PROCESS_FRAMES)
        assert_closed(ws)  # "The connection closes automatically after the process exits."
    assert frames[0]["type"] == "start" and frames[-1] == {"type": "exit", "exit_code": 0}
    with connect_ws(f"/v1/capsules/{capsule}/exec/stream", api.http) as ws:
        ws.send_json({"type": "start"})  # no cmd
        assert read_frames(api.conf, ws, op, PROCESS_FRAMES)[-1]["type"] == "error"


def test_process_stream(api: Api, capsule: str) -> None:
    op = "GET /v1/capsules/{id}/processes/{selector}/stream"
    bg = {
        "cmd": "/bin/sh",
        "args": ["-c", "sleep 0.5; echo late"],
        "background": True,
        "tag": "conf-late",
    }
    started = api("POST", "/v1/capsules/{id}/exec", 202, id=capsule, json=bg).json()
    for selector in (started["pid"], "conf-late"):
        url = f"/v1/capsules/{capsule}/processes/{selector}/stream"
        with connect_ws(url, api.http) as ws:
            assert ws.response is not None
            api.conf.check("GET", "/v1/capsules/{id}/processes/{selector}/stream", ws.response)
            assert read_frames(api.conf, ws, op, PROCESS_FRAMES, until="start")[0] == {
                "type": "start",
                "pid": started["pid"],
            }
    with connect_ws(f"/v1/capsules/{capsule}/processes/conf-late/stream", api.http) as ws:
        frames = read_frames(api.conf, ws, op, PROCESS_FRAMES)
    assert frames[-1] == {"type": "exit", "exit_code": 0}
    with connect_ws(f"/v1/capsules/{capsule}/processes/nope/stream", api.http) as ws:
        assert read_frames(api.conf, ws, op, PROCESS_FRAMES)[-1]["type"] == "error"


def test_pty(api: Api, capsule: str) -> None:
    op = "GET /v1/capsules/{id}/pty"
    url = f"/v1/capsules/{capsule}/pty"
    with connect_ws(url, api.http) as ws:
        assert ws.response is not None
        api.conf.check("GET", "/v1/capsules/{id}/pty", ws.response)
        ws.send_json(
            {
                "type": "start",
                "cmd": "/bin/sh",
                "args": ["-c", "echo pty-ready; exec sleep 30"],
                "cols": 100,
                "rows": 30,
                "envs": {"TERM": "xterm"},
            }
        )
        started = read_frames(api.conf, ws, op, PTY_FRAMES, until="started")[-1]
        assert started["tag"].startswith("pty-")
        seen = b""
        while b"pty-ready" not in seen:
            event = ws.receive(timeout=10)
            if isinstance(event, BytesMessage):
                api.conf.observe(Observation("ws", op, detail="binary output frame"))
                seen += bytes(event.data)
            else:
                check_frame(api.conf, op, json.loads(event.data), PTY_FRAMES)
    procs = api("GET", "/v1/capsules/{id}/processes", 200, id=capsule).json()["processes"]
    assert started["tag"] in [p.get("tag") for p in procs]
    with connect_ws(url, api.http) as ws:
        ws.send_json({"type": "connect", "tag": started["tag"]})
        assert (
            read_frames(api.conf, ws, op, PTY_FRAMES, until="started")[-1]["pid"]
            == (started["pid"])
        )
        ws.send_json({"type": "resize", "cols": 120, "rows": 40})
        ws.send_json({"type": "kill"})
        assert read_frames(api.conf, ws, op, PTY_FRAMES)[-1]["type"] == "exit"
    with connect_ws(url, api.http) as ws:
        ws.send_json({"type": "connect", "tag": "pty-00000000"})
        error = read_frames(api.conf, ws, op, PTY_FRAMES)[-1]
    assert error["type"] == "error" and error["fatal"] is True


def test_websocket_errors(srv: LocalServer, api: Api) -> None:
    # A malformed id is refused before the upgrade with a JSON 400; the server then
    # closes the connection, so each attempt uses its own client.
    paths: dict[str, dict[str, Any]] = {
        "/v1/capsules/{id}/exec/stream": {},
        "/v1/capsules/{id}/pty": {},
        "/v1/capsules/{id}/processes/{selector}/stream": {"selector": 1},
    }
    for template, extra in paths.items():
        with httpx.Client(base_url=srv.base_url, timeout=10) as fresh:
            api(
                "GET",
                template,
                400,
                client=fresh,
                id=MALFORMED,
                headers=ws_upgrade_headers(srv),
                **extra,
            )
    # Everything else is 101 plus an in-band error frame, where the spec documents
    # HTTP 404 (unknown capsule) and 409 (not running) for exec/stream and pty.
    paused = api.create()
    try:
        api("POST", "/v1/capsules/{id}/pause", 200, id=paused)
        for capsule_id, spec_status in ((UNKNOWN, 404), (paused, 409)):
            for template, extra in paths.items():
                name = f"GET {template}"
                url = template.format(id=capsule_id, **extra)
                frames = PTY_FRAMES if template.endswith("/pty") else PROCESS_FRAMES
                with connect_ws(url, api.http) as ws:
                    assert ws.response is not None
                    api.conf.check("GET", template, ws.response)
                    frame = ws.receive_json(timeout=10)
                    check_frame(api.conf, name, frame, frames)
                    assert frame["type"] == "error", frame
                    assert_closed(ws)
                responses = (api.conf.operation("GET", template) or {}).get("responses", {})
                if str(spec_status) in responses:
                    api.conf.observe(
                        Observation(
                            "ws",
                            name,
                            status=101,
                            detail=f"in-band error instead of HTTP {spec_status}: {frame['data']}",
                        )
                    )
        # A wrong key is an in-band "authentication failed" as well.
        with (
            httpx.Client(
                base_url=srv.base_url, headers={"X-API-Key": "wrn_" + "0" * 32}, timeout=10
            ) as wrong,
            connect_ws(f"/v1/capsules/{paused}/exec/stream", wrong) as ws,
        ):
            frame = ws.receive_json(timeout=10)
            check_frame(api.conf, "GET /v1/capsules/{id}/exec/stream", frame, PROCESS_FRAMES)
            assert frame == {"type": "error", "data": "authentication failed"}
    finally:
        api.destroy(paused)


def test_events_stream(api: Api) -> None:
    op = "GET /v1/events/stream"
    with api.http.stream("GET", "/v1/events/stream") as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        api.conf.observe(Observation("route", op, status=resp.status_code))
        lines = resp.iter_lines()
        assert next(lines) == "event: connected"
        data = next(lines)
        assert data.startswith("data: ")
        event = json.loads(data[len("data: ") :])
        api.conf.check_json(op, event, "local:sse", SSE_EVENT_SCHEMA)
        assert event["event"] == "connected"


def _by_operation(checked: set[tuple[str, int]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for op, status in sorted(checked):
        out.setdefault(op, []).append(status)
    return out


def test_every_operation_and_difference_was_exercised(
    request: pytest.FixtureRequest, conf: Conformance
) -> None:
    """Last: every operation got a success answer, and every allow-list entry occurred."""
    module = request.node.module
    mine = [i for i in request.session.items if getattr(i, "module", None) is module]
    if len(mine) != sum(1 for n in dir(module) if n.startswith("test_")):
        pytest.skip("needs the whole module")
    for op, statuses in sorted(_by_operation(conf.checked).items()):  # shown with -s
        print(f"{op}: {statuses}")
    for d in conf.allow:
        print(f"{d.id}: {len(conf.exercised[d.id])} occurrence(s)")
        for obs in conf.exercised[d.id]:
            print(f"    {obs}")
    successes = {op for op, status in conf.checked if status < 300}
    assert [o for o in API_KEY_OPERATIONS if o not in successes] == []
    assert ("GET /health", 200) in conf.checked
    stale = conf.unexercised()
    assert stale == [], "allow-list entries that no longer occur (remove them): " + ", ".join(
        d.id for d in stale
    )
