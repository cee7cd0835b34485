"""REST shapes, status codes and error envelopes of wrenn.local."""

from __future__ import annotations

import base64
import json
import re

import httpx
import pytest

from wrenn.local import LocalServer

from .conftest import needs_bwrap
from .helpers import create, destroy, error_of, pause, resume, sh, wait_for, wait_status

pytestmark = pytest.mark.local

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
UNKNOWN = "cl-" + "0" * 25


def test_health_needs_no_auth_and_reports_isolation(server: LocalServer) -> None:
    r = httpx.get(server.base_url + "/health")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.content.endswith(b"}\n")
    body = r.json()
    assert body["status"] == "ok"
    assert body["isolation"] == server.isolation
    assert body["version"]


def test_missing_and_wrong_key_are_401(server: LocalServer) -> None:
    r = httpx.get(server.base_url + "/v1/capsules")
    assert error_of(r) == (
        401,
        "unauthorized",
        "X-API-Key or Authorization: Bearer <token> required",
    )
    r = httpx.get(server.base_url + "/v1/capsules", headers={"X-API-Key": ""})
    assert error_of(r)[2] == "X-API-Key or Authorization: Bearer <token> required"
    r = httpx.get(server.base_url + "/v1/capsules", headers={"X-API-Key": "wrn_" + "0" * 32})
    assert error_of(r) == (401, "unauthorized", "invalid API key")
    r = httpx.get(
        server.base_url + "/v1/capsules", headers={"Authorization": f"Bearer {server.api_key}"}
    )
    assert r.status_code == 200


def test_unknown_route_is_chi_text_404(http: httpx.Client) -> None:
    r = http.get("/v1/nope")
    assert r.status_code == 404
    assert r.text == "404 page not found\n"


def test_create_shape_defaults_and_go_json(http: httpx.Client) -> None:
    r = http.post("/v1/capsules", json={"metadata": {"purpose": "a<b&c"}})
    try:
        assert r.status_code == 202
        raw = r.content
        assert raw.endswith(b"\n") and b": " not in raw and b", " not in raw
        assert b"a\\u003cb\\u0026c" in raw  # Go's HTML escaping
        c = r.json()
        assert re.fullmatch(r"cl-[0-9a-z]{25}", c["id"])
        assert list(c)[:6] == ["id", "status", "template", "vcpus", "memory_mb", "timeout_sec"]
        assert c["status"] == "starting"  # API 0.2.2: asynchronous, never final in the 202
        assert c["template"] == "minimal-ubuntu"
        assert (c["vcpus"], c["memory_mb"], c["timeout_sec"]) == (1, 512, 0)
        assert "started_at" not in c
        for key in ("created_at", "last_active_at", "last_updated"):
            assert TS.match(c[key]), c[key]
        assert c["metadata"]["purpose"] == "a<b&c"
        got = wait_status(http, c["id"])
        assert got["status"] == "running" and TS.match(got["started_at"])
        assert got["id"] == c["id"] and "disk_used_mb" in got
    finally:
        destroy(http, r.json()["id"])


def test_create_explicit_values_and_timeout_clamp(http: httpx.Client) -> None:
    # The test server clamps positive timeouts below 2 s (platform: 60 s).
    c = http.get(
        "/v1/capsules/" + create(http, template="minimal", vcpus=2, memory_mb=1024, timeout_sec=1)
    ).json()
    try:
        assert (c["template"], c["vcpus"], c["memory_mb"], c["timeout_sec"]) == (
            "minimal",
            2,
            1024,
            2,
        )
    finally:
        destroy(http, c["id"])


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"{not json", (400, "invalid_request", "invalid JSON body")),
        (b"", (400, "invalid_request", "invalid JSON body")),
        (b"[1]", (400, "invalid_request", "invalid JSON body")),
        (b'{"vcpus":"two"}', (400, "invalid_request", "invalid JSON body")),
        (b'{"template":"../etc"}', (400, "invalid_request", "invalid template name")),
        (b'{"template":"no-such-template"}', (404, "not_found", "resource not found")),
        (b'{"timeout_sec":-1}', (400, "invalid_request", "timeout_sec must be >= 0")),
        (b'{"metadata":{"a":1}}', (400, "invalid_request", "invalid JSON body")),
        (
            b'{"metadata":{"-a":"x"}}',
            (400, "invalid_request", "invalid metadata key: '-a'"),
        ),
        (
            b'{"metadata":{"agent_version":"x"}}',
            (400, "invalid_request", "metadata key 'agent_version' is reserved"),
        ),
        (
            b'{"metadata":{"k":"' + b"v" * 65 + b'"}}',
            (400, "invalid_request", "metadata value for 'k' exceeds 64 characters"),
        ),
        (
            json.dumps({"metadata": {f"k{i}": "v" for i in range(21)}}).encode(),
            (400, "invalid_request", "metadata may have at most 20 keys"),
        ),
    ],
)
def test_create_bad_input(
    http: httpx.Client, content: bytes, expected: tuple[int, str, str]
) -> None:
    r = http.post("/v1/capsules", content=content, headers={"Content-Type": "application/json"})
    assert error_of(r) == expected


def test_metadata_at_the_limits_is_accepted(http: httpx.Client) -> None:
    metadata = {f"k{i}": "v" * 64 for i in range(19)} | {"A" + "b" * 63: "x"}
    cid = create(http, metadata=metadata)
    try:
        got = http.get(f"/v1/capsules/{cid}").json()["metadata"]
        assert metadata.items() <= got.items()
    finally:
        destroy(http, cid)


def test_list_excludes_stopped_and_destroy_is_idempotent(http: httpx.Client) -> None:
    cid = create(http)
    assert cid in [c["id"] for c in http.get("/v1/capsules").json()]
    r = http.delete(f"/v1/capsules/{cid}")
    assert (r.status_code, r.content) == (202, b"")
    assert wait_status(http, cid, "stopped")["status"] == "stopped"
    assert cid not in [c["id"] for c in http.get("/v1/capsules").json()]
    assert http.delete(f"/v1/capsules/{cid}").status_code == 202
    assert http.get(f"/v1/capsules/{cid}").json()["status"] == "stopped"


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", ""),
        ("DELETE", ""),
        ("POST", "/exec"),
        ("POST", "/pause"),
        ("POST", "/resume"),
        ("POST", "/ping"),
        ("GET", "/metrics"),
        ("GET", "/processes"),
        ("DELETE", "/processes/1"),
        ("POST", "/files/read"),
        ("POST", "/files/list"),
    ],
)
def test_malformed_id_is_400_and_unknown_is_404(
    http: httpx.Client, method: str, suffix: str
) -> None:
    for bad in ("nope", "cl-SHOUTING0000000000000000000", "sb-" + "0" * 25, "cl-" + "0" * 24):
        r = http.request(method, f"/v1/capsules/{bad}{suffix}", json={"cmd": "true", "path": "/"})
        assert error_of(r) == (400, "invalid_request", "invalid sandbox ID"), (bad, r.text)
    r = http.request(method, f"/v1/capsules/{UNKNOWN}{suffix}", json={"cmd": "true", "path": "/"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_wrong_state_answers(http: httpx.Client, capsule: str) -> None:
    base = f"/v1/capsules/{capsule}"
    assert error_of(http.post(base + "/resume")) == (409, "invalid_state", "resource is not paused")
    pause(http, capsule)
    assert error_of(http.post(base + "/pause")) == (409, "invalid_state", "resource is not running")
    assert error_of(http.post(base + "/ping")) == (409, "invalid_state", "resource is not running")
    r = http.post(base + "/exec", json={"cmd": "true"})
    assert error_of(r) == (409, "invalid_state", "sandbox is not running (status: paused)")
    # The state check runs before the body is decoded.
    r = http.post(base + "/exec", content=b"{bad", headers={"Content-Type": "application/json"})
    assert r.status_code == 409
    assert error_of(http.get(base + "/processes"))[0] == 409
    r = http.post(base + "/files/read", json={"path": "/etc/hostname"})
    assert error_of(r) == (409, "invalid_state", "sandbox is not running")
    assert http.get(base + "/metrics").status_code == 200  # paused: from stored samples
    resume(http, capsule)
    assert http.post(base + "/ping").status_code == 204
    destroy(http, capsule)
    assert error_of(http.post(base + "/pause"))[:2] == (409, "invalid_state")
    assert error_of(http.get(base + "/metrics"))[:2] == (404, "not_found")
    r = http.post("/v1/snapshots", json={"sandbox_id": capsule})
    assert error_of(r) == (409, "invalid_state", "sandbox must be running or paused")


@needs_bwrap
def test_exec_foreground_shape_env_cwd_and_argv(http: httpx.Client, capsule: str) -> None:
    r = http.post(
        f"/v1/capsules/{capsule}/exec",
        json={
            "cmd": "/bin/sh",
            "args": ["-c", 'echo "$FOO|$HOME|$USER|$(pwd)"; echo oops >&2; exit 3'],
            "envs": {"FOO": "bar"},
            "cwd": "/tmp",
        },
    )
    assert r.status_code == 200
    body = r.json()
    assert list(body) == [
        "sandbox_id",
        "cmd",
        "stdout",
        "stderr",
        "exit_code",
        "duration_ms",
        "encoding",
    ]
    assert body["stdout"] == "bar|/root|root|/tmp\n"
    assert (body["stderr"], body["exit_code"], body["encoding"]) == ("oops\n", 3, "utf-8")
    # argv is executed directly: no shell expands these arguments.
    out = http.post(
        f"/v1/capsules/{capsule}/exec", json={"cmd": "echo", "args": ["$HOME", "a  b", "*"]}
    ).json()
    assert out["stdout"] == "$HOME a  b *\n"
    assert sh(http, capsule, "pwd")["stdout"] == "/root\n"


def test_exec_binary_output_is_base64(http: httpx.Client, capsule: str) -> None:
    body = sh(http, capsule, r"printf '\377\376ok'; echo plain >&2")
    assert body["encoding"] == "base64"
    assert base64.b64decode(body["stdout"]) == b"\xff\xfeok"
    assert base64.b64decode(body["stderr"]) == b"plain\n"


def test_exec_start_failures_are_502(http: httpx.Client, capsule: str) -> None:
    for body in ({"cmd": "no-such-command"}, {"cmd": "pwd", "cwd": "/no/such/dir"}):
        for background in (False, True):
            r = http.post(f"/v1/capsules/{capsule}/exec", json={**body, "background": background})
            assert error_of(r)[:2] == (502, "agent_error"), (body, background)
    assert http.get(f"/v1/capsules/{capsule}/processes").json() == {"processes": []}


def test_exec_requires_cmd(http: httpx.Client, capsule: str) -> None:
    assert error_of(http.post(f"/v1/capsules/{capsule}/exec", json={})) == (
        400,
        "invalid_request",
        "cmd is required",
    )


@needs_bwrap
def test_exec_timeout_kills_the_command(http: httpx.Client, capsule: str) -> None:
    r = http.post(
        f"/v1/capsules/{capsule}/exec",
        json={
            "cmd": "/bin/sh",
            "args": ["-c", "echo $$ > /tmp/pid; sleep 97.25; echo after"],
            "timeout_sec": 1,
        },
    )
    assert error_of(r)[:2] == (502, "agent_error")
    assert "timed out" in r.json()["error"]["message"]
    out = sh(http, capsule, 'kill -0 "$(cat /tmp/pid)" 2>/dev/null && echo alive || echo gone')
    assert out["stdout"] == "gone\n"
    # The whole process group went, not only the shell.
    assert sh(http, capsule, "ps -eo args | grep -c '^sleep 97.25' || true")["stdout"] == "0\n"


@needs_bwrap
def test_kill_reaches_the_whole_process_tree(http: httpx.Client, capsule: str) -> None:
    base = f"/v1/capsules/{capsule}"
    for signal_name in ("SIGTERM", "SIGKILL"):
        r = http.post(
            base + "/exec",
            json={"cmd": "/bin/sh", "args": ["-c", "sleep 96.5; echo x"], "background": True},
        )
        assert wait_for(
            lambda: (
                sh(http, capsule, "ps -eo args | grep -c '^sleep 96.5' || true")["stdout"] == "1\n"
            )
        )
        http.delete(base + f"/processes/{r.json()['pid']}", params={"signal": signal_name})
        assert wait_for(
            lambda: (
                sh(http, capsule, "ps -eo args | grep -c '^sleep 96.5' || true")["stdout"] == "0\n"
            )
        ), signal_name


@needs_bwrap
def test_client_disconnect_kills_foreground_command(
    server: LocalServer, http: httpx.Client, capsule: str
) -> None:
    with (
        httpx.Client(base_url=server.base_url, headers={"X-API-Key": server.api_key}) as impatient,
        pytest.raises(httpx.ReadTimeout),
    ):
        impatient.post(
            f"/v1/capsules/{capsule}/exec", json={"cmd": "sleep", "args": ["77.5"]}, timeout=0.3
        )
    assert wait_for(
        lambda: sh(http, capsule, "ps -eo args | grep -c '^sleep 77.5' || true")["stdout"] == "0\n"
    )


def test_background_processes_list_and_kill(http: httpx.Client, capsule: str) -> None:
    base = f"/v1/capsules/{capsule}"
    r = http.post(
        base + "/exec", json={"cmd": "sleep", "args": ["300"], "background": True, "tag": "sleeper"}
    )
    assert r.status_code == 202
    assert r.json() == {
        "sandbox_id": capsule,
        "cmd": "sleep",
        "pid": r.json()["pid"],
        "tag": "sleeper",
    }
    r2 = http.post(
        base + "/exec",
        json={
            "cmd": "/bin/sh",
            "args": ["-c", "trap 'exit 0' TERM; while :; do sleep 0.05; done"],
            "background": True,
        },
    )
    assert re.fullmatch(r"proc-[0-9a-f]{8}", r2.json()["tag"])
    procs = http.get(base + "/processes").json()["processes"]
    assert {"pid": r.json()["pid"], "tag": "sleeper", "cmd": "sleep", "args": ["300"]} in procs
    assert http.delete(base + f"/processes/{r2.json()['tag']}?signal=SIGTERM").status_code == 204
    assert http.delete(base + f"/processes/{r.json()['pid']}").status_code == 204
    assert wait_for(lambda: not http.get(base + "/processes").json()["processes"], timeout=5)
    assert http.get(base + "/processes").json() == {"processes": []}
    assert error_of(http.delete(base + "/processes/nothing"))[:2] == (404, "not_found")


def test_metrics_stats_usage_shapes(server: LocalServer, http: httpx.Client, capsule: str) -> None:
    sh(http, capsule, "head -c 200000 /dev/zero > $HOME/blob")
    m = http.get(f"/v1/capsules/{capsule}/metrics", params={"range": "5m"}).json()
    assert m["sandbox_id"] == capsule and m["range"] == "5m"
    point = m["points"][-1]
    assert list(point) == ["timestamp_unix", "cpu_pct", "mem_bytes", "disk_bytes"]
    # The bwrap init is always resident; a plain capsule may have no process at all.
    assert point["mem_bytes"] > 0 or server.isolation == "none"
    assert point["disk_bytes"] > 0
    assert error_of(http.get(f"/v1/capsules/{capsule}/metrics", params={"range": "7d"}))[:2] == (
        400,
        "invalid_request",
    )
    s = http.get("/v1/capsules/stats", params={"range": "5m"}).json()
    assert s["range"] == "5m"
    assert set(s["current"]) == {"running_count", "vcpus_reserved", "memory_mb_reserved"}
    assert s["current"]["running_count"] >= 1
    assert set(s["peaks"]) == {"running_count", "vcpus", "memory_mb"}
    assert len(s["series"]["labels"]) == len(s["series"]["running"]) == 100
    assert http.get("/v1/capsules/stats", params={"range": "2d"}).status_code == 400
    u = http.get("/v1/capsules/usage").json()
    assert len(u["points"]) == 30
    assert set(u["points"][0]) == {"date", "cpu_minutes", "ram_mb_minutes"}
    u = http.get("/v1/capsules/usage", params={"from": "2026-01-01", "to": "2026-01-03"}).json()
    assert [p["date"] for p in u["points"]] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert (
        http.get(
            "/v1/capsules/usage", params={"from": "2026-02-01", "to": "2026-01-01"}
        ).status_code
        == 400
    )
    assert (
        http.get(
            "/v1/capsules/usage", params={"from": "2025-01-01", "to": "2026-01-01"}
        ).status_code
        == 400
    )
