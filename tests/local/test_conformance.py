# tests/local/openapi-0.2.2.yaml: byte-identical copy of ../shared/wrenn-api/openapi-0.2.2.yaml, the Wrenn platform's API 0.2.2 spec (from the official wrenn 0.3.0 sdist).
"""Conformance of wrenn.local to the platform's OpenAPI spec (API 0.2.2).

Every operation of the spec (all of them take the team API key), plus
``/health``, is driven through realistic sequences, the asynchronous lifecycle
included: a call answers 202 with the capsule in its transitional status, and
the test polls (bounded) until it settles.  The module's server makes each
transitional status last :data:`TRANSITION_DELAY` seconds, so the answers
during a transition are checked too.  Each answer is checked by
:mod:`tests.local.openapi_check`: the status must be listed for the operation
and the JSON body must validate against the response schema (SSE events
against ``SSEEvent``).  Known, intentional departures are the :data:`ALLOW`
list below; each must actually occur (see the last test), so the list cannot
go stale.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
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

SHARED_SPEC = (
    Path(__file__).resolve().parents[2].parent / "shared" / "wrenn-api" / "openapi-0.2.2.yaml"
)
UNKNOWN = "cl-" + "0" * 25
MALFORMED = "cl-NOT-AN-ID"
# Long enough to make calls during a transition on a loaded machine, short enough
# to keep the module quick (every lifecycle call waits this long to settle).
TRANSITION_DELAY = 0.5
SETTLE_TIMEOUT = 30.0

# Every operation of API 0.2.2; each takes the team API key.
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
    "GET /v1/events/stream",
)
WS_OPERATIONS = tuple(
    o for o in API_KEY_OPERATIONS if o.endswith(("/pty", "/exec/stream", "/{selector}/stream"))
)
ID_OPERATIONS = tuple(o for o in API_KEY_OPERATIONS if "{id}" in o and o not in WS_OPERATIONS)
MISSING_PATH_OPS = ops(
    "POST /v1/capsules/{id}/files/read",
    "POST /v1/capsules/{id}/files/stream/read",
    "POST /v1/capsules/{id}/files/list",
    "POST /v1/capsules/{id}/files/remove",
)
SSE_EVENT = "#/components/schemas/SSEEvent"

# Known departures from openapi-0.2.2.yaml.  Every entry must be exercised by this
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
        "401-undeclared",
        "operations declare apiKeyAuth security but (except the SSE route) no 401 response; a missing or wrong key is 401 (PROTOCOL §1.1)",
        kind="status",
        statuses=frozenset({401}),
        codes=frozenset({"unauthorized"}),
    ),
    Difference(
        "400-malformed-id",
        "the process-stream WebSocket lists only 101; a malformed {id} is refused with 400 before the upgrade, as on every route (PROTOCOL §1.1)",
        kind="status",
        operations=ops("GET /v1/capsules/{id}/processes/{selector}/stream"),
        statuses=frozenset({400}),
        codes=frozenset({"invalid_request"}),
        message="invalid sandbox ID",
    ),
    Difference(
        "404-unknown-template",
        "POST /v1/capsules lists no 404, but a template that does not exist (yet) is 404 not_found, as on the platform (PROTOCOL §1.2.1)",
        kind="status",
        operations=ops("POST /v1/capsules"),
        statuses=frozenset({404}),
        codes=frozenset({"not_found"}),
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
        "WS routes document HTTP 404/409; the platform upgrades and sends an in-band error frame (PROTOCOL §1.4 #10; the spec's own exec/stream prose says so)",
        kind="ws",
        operations=ops("GET /v1/capsules/{id}/exec/stream", "GET /v1/capsules/{id}/pty"),
        detail="in-band error instead of HTTP",
    ),
    Difference(
        "snapshot-overwrite",
        "?overwrite=true replaces an existing team snapshot (README); the spec says names are immutable and re-use is 409, which is the answer without it",
        kind="behaviour",
        operations=ops("POST /v1/snapshots"),
        detail="overwrite=true replaced an existing snapshot",
    ),
]


# Routes the spec lacks: schemas transcribed from PROTOCOL.md §1.2.
HEALTH_SCHEMA = {
    "type": "object",
    "required": ["status", "version"],
    "properties": {"status": {"const": "ok"}, "version": {"type": "string"}},
}


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def srv() -> Iterator[LocalServer]:
    with LocalServer(metrics_interval=0.2, transition_delay=TRANSITION_DELAY) as server:
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

    # The asynchronous lifecycle: a 202 with the transitional status, then polling.
    def status(self, capsule_id: str) -> str:
        return str(self("GET", "/v1/capsules/{id}", 200, id=capsule_id).json()["status"])

    def wait(self, capsule_id: str, *statuses: str) -> str:
        """Poll (bounded) until the capsule is in one of ``statuses``; that status."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        for _ in range(int(SETTLE_TIMEOUT / 0.05) + 1):
            status = self.status(capsule_id)
            if status in statuses or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert status in statuses, f"{capsule_id} is {status}, waited for {statuses}"
        return status

    def accepted(self, r: httpx.Response, transitional: str) -> dict[str, Any]:
        capsule: dict[str, Any] = r.json()
        assert capsule["status"] == transitional, capsule
        return capsule

    def create(self, **body: Any) -> str:
        r = self("POST", "/v1/capsules", 202, json=body)
        capsule_id = str(self.accepted(r, "starting")["id"])
        self.wait(capsule_id, "running")
        return capsule_id

    def pause(self, capsule_id: str) -> None:
        self.accepted(self("POST", "/v1/capsules/{id}/pause", 202, id=capsule_id), "pausing")
        self.wait(capsule_id, "paused")

    def resume(self, capsule_id: str) -> None:
        self.accepted(self("POST", "/v1/capsules/{id}/resume", 202, id=capsule_id), "resuming")
        self.wait(capsule_id, "running")

    def destroy(self, capsule_id: str) -> None:
        self("DELETE", "/v1/capsules/{id}", 202, id=capsule_id)
        self.wait(capsule_id, "stopped")

    def snapshot(self, capsule_id: str, name: str, **params: str) -> None:
        before = self.status(capsule_id)
        r = self(
            "POST",
            "/v1/snapshots",
            202,
            json={"sandbox_id": capsule_id, "name": name},
            params=params,
        )
        assert self.accepted(r, "snapshotting")["id"] == capsule_id  # the capsule, not a template
        self.wait(capsule_id, before)
        assert name in self.template_names()

    def template_names(self) -> list[str]:
        return [t["name"] for t in self("GET", "/v1/snapshots", 200).json()]

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
        # Cleanup, not conformance: a failed test may leave it mid-transition.
        api.wait(capsule_id, "running", "paused", "stopped", "error")
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
    """JSON frames up to and including one of type ``until`` (or ``error``), each validated.

    Binary frames are PTY output (API 0.2.2); anywhere else they break the spec.
    """
    out: list[dict[str, Any]] = []
    for _ in range(200):
        event = ws.receive(timeout=10)
        if isinstance(event, BytesMessage):
            if frames is not PTY_FRAMES:
                conf.observe(Observation("ws", operation, detail="binary frame"))
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


def sse_events(
    conf: Conformance, lines: Iterator[str], last: tuple[str, str], ids: set[str]
) -> list[dict[str, Any]]:
    """SSE events about ``ids``, each validated as an ``SSEEvent``, up to ``(event, id)``."""
    seen: list[dict[str, Any]] = []
    kind = None
    for _, line in zip(range(2000), lines, strict=False):
        if line.startswith("event: "):
            kind = line[len("event: ") :]
        if not line.startswith("data: "):
            continue
        event = json.loads(line[len("data: ") :])
        conf.check_json("GET /v1/events/stream", event, SSE_EVENT, {"$ref": SSE_EVENT})
        assert event["event"] == kind, "the event: line names the JSON's event"
        if event["resource"]["id"] in ids:
            seen.append(event)
            if (event["event"], event["resource"]["id"]) == last:
                return seen
    raise AssertionError(f"no {last} event among {[e['event'] for e in seen]}")


# --------------------------------------------------------------------------- tests
def test_spec_copy_is_byte_identical() -> None:
    if not SHARED_SPEC.exists():
        pytest.skip(f"{SHARED_SPEC} is not present")
    assert SPEC_PATH.read_bytes() == SHARED_SPEC.read_bytes()


def test_spec_has_every_api_key_operation(conf: Conformance) -> None:
    in_spec = {
        f"{method.upper()} {path}"
        for path, item in conf.spec["paths"].items()
        for method, op in item.items()
        if method != "parameters" and {"apiKeyAuth": []} in op.get("security", [])
    }
    assert in_spec == set(API_KEY_OPERATIONS)
    assert not conf.has_operation("GET /health")


def test_health(srv: LocalServer, conf: Conformance) -> None:
    with httpx.Client(base_url=srv.base_url) as anonymous:  # no key needed
        r = anonymous.get("/health")
    assert r.status_code == 200
    conf.check("GET", "/health", r, local_schema=HEALTH_SCHEMA)


def _busy_answers(api: Api, cid: str, status: str) -> None:
    """What every lifecycle and data-plane call answers while ``cid`` is in ``status``."""
    assert api.status(cid) == status
    r = api("POST", "/v1/capsules/{id}/exec", 409, id=cid, json={"cmd": "true"})
    assert r.json()["error"]["message"] == f"sandbox is not running (status: {status})"
    api("POST", "/v1/capsules/{id}/ping", 409, id=cid)
    api("GET", "/v1/capsules/{id}/metrics", 404, id=cid)
    api("POST", "/v1/capsules/{id}/files/read", 409, id=cid, json={"path": "/root"})
    api("POST", "/v1/capsules/{id}/resume", 409, id=cid)
    api("POST", "/v1/capsules/{id}/pause", 409, id=cid)
    api("DELETE", "/v1/capsules/{id}", 409, id=cid)
    api("POST", "/v1/snapshots", 409, json={"sandbox_id": cid, "name": f"busy-{status}"})
    assert api.status(cid) == status, f"the {status} transition ended during the checks"


def test_capsule_lifecycle(api: Api) -> None:
    body = {"template": "minimal-ubuntu", "vcpus": 1, "memory_mb": 256, "timeout_sec": 0}
    r = api("POST", "/v1/capsules", 202, json=body)
    cid = api.accepted(r, "starting")["id"]
    try:
        assert cid in [c["id"] for c in api("GET", "/v1/capsules", 200).json()]
        _busy_answers(api, cid, "starting")
        api.wait(cid, "running")
        got = api("GET", "/v1/capsules/{id}", 200, id=cid).json()
        assert got["started_at"] and "disk_used_mb" in got
        assert "disk_used_mb" not in api("GET", "/v1/capsules", 200).json()[0]
        api("POST", "/v1/capsules/{id}/ping", 204, id=cid)
        time.sleep(0.5)  # a few metric samples
        for rng in ("5m", "10m", "1h", "2h", "6h", "12h", "24h"):
            r = api("GET", "/v1/capsules/{id}/metrics", 200, id=cid, params={"range": rng})
            assert r.json()["range"] == rng
        points = api("GET", "/v1/capsules/{id}/metrics", 200, id=cid).json()["points"]
        assert points, "no metric samples"
        api("GET", "/v1/capsules/{id}/metrics", 400, id=cid, params={"range": "3m"})
        api("POST", "/v1/capsules/{id}/resume", 409, id=cid)
        api.accepted(api("POST", "/v1/capsules/{id}/pause", 202, id=cid), "pausing")
        _busy_answers(api, cid, "pausing")
        api.wait(cid, "paused")
        api("POST", "/v1/capsules/{id}/pause", 409, id=cid)
        api("POST", "/v1/capsules/{id}/ping", 409, id=cid)
        api("GET", "/v1/capsules/{id}/metrics", 200, id=cid)  # stored samples
        api.accepted(api("POST", "/v1/capsules/{id}/resume", 202, id=cid), "resuming")
        _busy_answers(api, cid, "resuming")
        api.wait(cid, "running")
        api("POST", "/v1/capsules/{id}/resume", 409, id=cid)
    finally:
        api.wait(cid, "running", "paused", "error")
        r = api("DELETE", "/v1/capsules/{id}", 202, id=cid)
    assert api.status(cid) == "stopping"
    api("DELETE", "/v1/capsules/{id}", 202, id=cid)  # already under way
    api("POST", "/v1/capsules/{id}/pause", 409, id=cid)
    api.wait(cid, "stopped")
    assert cid not in [c["id"] for c in api("GET", "/v1/capsules", 200).json()]
    api.destroy(cid)  # idempotent
    api("GET", "/v1/capsules/{id}/metrics", 404, id=cid)
    api("POST", "/v1/capsules/{id}/resume", 409, id=cid)


def test_create_validation(api: Api) -> None:
    api("POST", "/v1/capsules", 400, content=b"{oops")
    api("POST", "/v1/capsules", 400, content=b"")
    api("POST", "/v1/capsules", 400, json={"template": "no spaces allowed"})
    api("POST", "/v1/capsules", 400, json={"vcpus": "two"})
    api("POST", "/v1/capsules", 400, json={"timeout_sec": -1})  # the spec's minimum is 0
    api("POST", "/v1/capsules", 404, json={"template": "no-such-template"})
    # Create-time metadata rules of API 0.2.2.
    bad_metadata: list[dict[str, Any]] = [
        {f"k{i}": "v" for i in range(21)},
        {"-leading-dash": "v"},
        {"k" * 65: "v"},
        {"k": "v" * 65},
        {"k": 1},
        *({key: "v"} for key in ("kernel_version", "vmm_version", "agent_version", "envd_version")),
    ]
    for metadata in bad_metadata:
        r = api("POST", "/v1/capsules", 400, json={"metadata": metadata})
        assert r.json()["error"]["code"] == "invalid_request"
    metadata = {f"k{i}": "v" * 64 for i in range(19)} | {"Ab.c_d-" + "e" * 57: ""}
    cid = api.create(metadata=metadata, timeout_sec=1)
    try:
        got = api("GET", "/v1/capsules/{id}", 200, id=cid).json()
        assert metadata.items() <= got["metadata"].items()
        assert got["timeout_sec"] == 60  # positive values below 60 are clamped to 60
    finally:
        api.destroy(cid)
    cid = api.create(metadata=None)  # nullable
    api.destroy(cid)


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
    r = api("POST", "/v1/capsules/{id}/files/mkdir", 409, id=capsule, json={"path": "/root/conf"})
    assert r.json()["error"]["code"] == "already_exists"  # the code 0.2.2 names
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
        r = api("POST", "/v1/snapshots", 202, json={"sandbox_id": source, "name": "conf-snap"})
        assert api.accepted(r, "snapshotting")["id"] == source
        # Until snapshotting ends there is no template: booting from it is 404.
        assert "conf-snap" not in api.template_names()
        api("POST", "/v1/capsules", 404, json={"template": "conf-snap"})
        taken = {"sandbox_id": source, "name": "conf-snap"}
        assert api("POST", "/v1/snapshots", 409, json=taken).json()["error"]["code"] == (
            "template_name_taken"
        )
        _busy_answers(api, source, "snapshotting")
        api.wait(source, "running")  # a running capsule is snapshotted live and runs on
        assert api.sh(source, "cat /root/kept.txt")["stdout"] == "kept\n"
        templates = {t["name"]: t for t in api("GET", "/v1/snapshots", 200).json()}
        assert {"conf-snap", "minimal", "minimal-ubuntu"} <= set(templates)
        snap, base = templates["conf-snap"], templates["minimal-ubuntu"]
        assert (snap["type"], snap["platform"], snap["protected"]) == ("snapshot", False, False)
        assert (base["type"], base["platform"], base["protected"]) == ("base", True, True)
        for kind in ("snapshot", "base"):
            listed = api("GET", "/v1/snapshots", 200, params={"type": kind}).json()
            assert listed and {t["type"] for t in listed} == {kind}
        # Names are immutable (409) unless overwrite=true, a documented difference.
        assert api("POST", "/v1/snapshots", 409, json=taken).json()["error"]["code"] == (
            "template_name_taken"
        )
        api.sh(source, "echo v2 > /root/kept.txt")
        api.snapshot(source, "conf-snap", overwrite="true")
        api.conf.observe(
            Observation(
                "behaviour",
                "POST /v1/snapshots",
                detail="overwrite=true replaced an existing snapshot",
            )
        )
        reserved = {"sandbox_id": source, "name": "minimal"}
        assert api("POST", "/v1/snapshots", 409, json=reserved).json()["error"]["code"] == (
            "name_reserved"
        )
        before = set(api.template_names())
        r = api("POST", "/v1/snapshots", 202, json={"sandbox_id": source})  # generated name
        api.accepted(r, "snapshotting")
        api.wait(source, "running")
        (generated,) = set(api.template_names()) - before
        assert generated.startswith("template-")
        # A paused capsule is snapshotted as it is and stays paused.
        api.pause(source)
        api.snapshot(source, "conf-from-paused")
        clone = api.create(template="conf-snap")
        try:
            r = api(
                "POST",
                "/v1/capsules/{id}/files/read",
                200,
                id=clone,
                json={"path": "/root/kept.txt"},
            )
            assert r.content == b"v2\n"
        finally:
            api.destroy(clone)
    finally:
        api.wait(source, "running", "paused", "error")
        api.destroy(source)
    api("POST", "/v1/snapshots", 409, json={"sandbox_id": source, "name": "conf-late"})
    api("POST", "/v1/snapshots", 404, json={"sandbox_id": UNKNOWN, "name": "conf-none"})
    api("POST", "/v1/snapshots", 400, json={})
    api("POST", "/v1/snapshots", 400, json={"sandbox_id": MALFORMED})
    api("POST", "/v1/snapshots", 400, json={"sandbox_id": UNKNOWN, "name": "-bad.name"})
    for t in api("GET", "/v1/snapshots", 200, params={"type": "snapshot"}).json():
        api("DELETE", "/v1/snapshots/{name}", 204, name=t["name"])
    api("DELETE", "/v1/snapshots/{name}", 404, name="conf-snap")
    for protected in ("minimal", "minimal-ubuntu"):
        r = api("DELETE", "/v1/snapshots/{name}", 403, name=protected)
        assert r.json()["error"]["code"] == "forbidden"
    api("DELETE", "/v1/snapshots/{name}", 400, name="-bad.name")


def test_auth_errors(srv: LocalServer, api: Api) -> None:
    with httpx.Client(base_url=srv.base_url, timeout=10) as anonymous:
        api("GET", "/v1/capsules", 401, client=anonymous)
        api("GET", "/v1/snapshots", 401, client=anonymous, headers={"X-API-Key": "wrn_" + "0" * 32})
        api("POST", "/v1/capsules", 401, client=anonymous, json={})
        api("GET", "/v1/capsules/{id}", 401, client=anonymous, id=UNKNOWN)
        api("GET", "/v1/events/stream", 401, client=anonymous)  # the one route that lists 401
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
    api.pause(capsule)
    allowed_200 = {"GET /v1/capsules/{id}", "GET /v1/capsules/{id}/metrics"}
    for method, template, kwargs in _id_requests():
        name = f"{method} {template}"
        if name in allowed_200 or name.endswith("/resume"):
            continue
        if name == "DELETE /v1/capsules/{id}":
            continue  # destroy works from paused
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
        for _ in range(200):  # output is raw binary frames (API 0.2.2)
            if b"pty-ready" in seen:
                break
            event = ws.receive(timeout=10)
            if isinstance(event, BytesMessage):
                seen += bytes(event.data)
            else:
                check_frame(api.conf, op, json.loads(event.data), PTY_FRAMES)
        assert b"pty-ready" in seen
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
        api.pause(paused)
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
        api.conf.check("GET", "/v1/events/stream", resp)
        lines = resp.iter_lines()
        assert next(lines) == "event: connected"
        data = next(lines)
        assert data.startswith("data: ")
        connected = json.loads(data[len("data: ") :])
        api.conf.check_json(op, connected, SSE_EVENT, {"$ref": SSE_EVENT})
        assert connected["event"] == "connected" and "outcome" not in connected
        cid = api.create()
        api.pause(cid)
        api.resume(cid)
        api.snapshot(cid, "conf-events")
        api("DELETE", "/v1/snapshots/{name}", 204, name="conf-events")
        api.destroy(cid)
        seen = sse_events(api.conf, lines, ("capsule.destroy", cid), {cid, "conf-events"})
    actions = [(e["event"], e["outcome"]) for e in seen if e["event"] != "capsule.state.changed"]
    assert actions == [
        ("capsule.create", "success"),
        ("capsule.pause", "success"),
        ("capsule.resume", "success"),
        ("template.snapshot.create", "success"),
        ("template.snapshot.delete", "success"),
        ("capsule.destroy", "success"),
    ]
    changes = [
        (e["metadata"]["from"], e["metadata"]["to"])
        for e in seen
        if e["event"] == "capsule.state.changed"
    ]
    assert changes == [
        ("pending", "starting"),
        ("starting", "running"),
        ("running", "pausing"),
        ("pausing", "paused"),
        ("paused", "resuming"),
        ("resuming", "running"),
        ("running", "snapshotting"),
        ("snapshotting", "running"),
        ("running", "stopping"),
        ("stopping", "stopped"),
    ]
    for event in seen:
        assert event["actor"]["type"] == "api_key"
        if event["event"] == "capsule.state.changed":
            assert "outcome" not in event
        if event["event"].startswith("capsule."):
            assert event["sandbox"]["id"] == cid
            assert event["resource"] == {"id": cid, "type": "capsule"}
        else:
            assert event["resource"] == {"id": "conf-events", "type": "template"}


def test_failed_boot_publishes_an_error_outcome(srv: LocalServer, api: Api) -> None:
    source = api.create()
    try:
        api.snapshot(source, "conf-broken")
    finally:
        api.destroy(source)
    # Break the template behind the server's back: the boot that copies it fails.
    shutil.rmtree(srv.state_dir / "templates" / "conf-broken" / "rw")
    try:
        with api.http.stream("GET", "/v1/events/stream") as resp:
            lines = resp.iter_lines()
            assert next(lines) == "event: connected"
            assert json.loads(next(lines)[len("data: ") :])["event"] == "connected"
            r = api("POST", "/v1/capsules", 202, json={"template": "conf-broken"})
            cid = api.accepted(r, "starting")["id"]
            assert api.wait(cid, "running", "error") == "error"
            seen = sse_events(api.conf, lines, ("capsule.create", cid), {cid})
        assert seen[-1]["outcome"] == "error" and seen[-1]["error"]
        assert seen[-1]["sandbox"]["status"] == "error"
        assert cid not in [c["id"] for c in api("GET", "/v1/capsules", 200).json()]
        api.destroy(cid)  # an error capsule can still be destroyed
    finally:
        api("DELETE", "/v1/snapshots/{name}", 204, name="conf-broken")


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
