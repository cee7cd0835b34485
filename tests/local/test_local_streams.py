"""WebSocket exec/process/PTY streams and the SSE event stream."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import pytest
from httpx_ws import WebSocketSession, WebSocketUpgradeError, connect_ws
from wsproto.events import BytesMessage, TextMessage

from wrenn.local import LocalServer

from .conftest import needs_bwrap
from .helpers import create, destroy, pause, resume, snapshot, wait_for

pytestmark = pytest.mark.local


def frames_until_exit(ws: WebSocketSession, limit: int = 200) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for _ in range(limit):
        frame = ws.receive_json(timeout=10)
        out.append(frame)
        if frame["type"] in ("exit", "error"):
            return out
    raise AssertionError(f"no exit frame in {limit} frames: {out}")


def text_of(frames: list[dict[str, Any]], kind: str) -> str:
    return "".join(f["data"] for f in frames if f["type"] == kind)


@needs_bwrap
def test_exec_stream_frames(http: httpx.Client, capsule: str) -> None:
    with connect_ws(f"/v1/capsules/{capsule}/exec/stream", http) as ws:
        ws.send_json(
            {
                "type": "start",
                "cmd": "/bin/sh",
                "args": ["-c", "echo out; echo err >&2; echo $V; pwd; exit 3"],
                "envs": {"V": "vee"},
                "cwd": "/workspace",
            }
        )
        frames = frames_until_exit(ws)
    assert frames[0]["type"] == "start" and frames[0]["pid"] > 0
    assert text_of(frames, "stdout") == "out\nvee\n/workspace\n"
    assert text_of(frames, "stderr") == "err\n"
    assert frames[-1] == {"type": "exit", "exit_code": 3}


@needs_bwrap
def test_stream_and_background_pids_are_capsule_pids(http: httpx.Client, capsule: str) -> None:
    # Even for a command that exits at once, the pid is the one the capsule sees.
    with connect_ws(f"/v1/capsules/{capsule}/exec/stream", http) as ws:
        ws.send_json({"type": "start", "cmd": "/bin/sh", "args": ["-c", "echo $$"]})
        frames = frames_until_exit(ws)
    assert text_of(frames, "stdout") == f"{frames[0]['pid']}\n"
    r = http.post(
        f"/v1/capsules/{capsule}/exec",
        json={"cmd": "/bin/sh", "args": ["-c", "echo $$ > /tmp/bgpid"], "background": True},
    )
    assert wait_for(lambda: read_text(http, capsule, "/tmp/bgpid") == f"{r.json()['pid']}\n")


def read_text(http: httpx.Client, capsule: str, path: str) -> str | None:
    r = http.post(f"/v1/capsules/{capsule}/files/read", json={"path": path})
    return r.text if r.status_code == 200 else None


def test_exec_stream_stop_kills_the_process(http: httpx.Client, capsule: str) -> None:
    with connect_ws(f"/v1/capsules/{capsule}/exec/stream", http) as ws:
        ws.send_json({"type": "start", "cmd": "sleep", "args": ["300"]})
        start = ws.receive_json(timeout=10)
        assert start["type"] == "start"
        ws.send_json({"type": "stop"})
        frames = frames_until_exit(ws)
    assert frames[-1]["type"] == "exit" and frames[-1]["exit_code"] != 0
    assert http.get(f"/v1/capsules/{capsule}/processes").json() == {"processes": []}


def test_ws_errors_auth_state_and_bad_id(
    server: LocalServer, http: httpx.Client, capsule: str
) -> None:
    with (
        httpx.Client(base_url=server.base_url, headers={"X-API-Key": "wrn_wrong"}) as bad,
        connect_ws(f"/v1/capsules/{capsule}/exec/stream", bad) as ws,
    ):
        assert ws.receive_json(timeout=10) == {"type": "error", "data": "authentication failed"}
    with (
        pytest.raises(WebSocketUpgradeError) as info,
        connect_ws("/v1/capsules/not-an-id/pty", http),
    ):
        pass
    assert info.value.response.status_code == 400
    pause(http, capsule)
    with connect_ws(f"/v1/capsules/{capsule}/exec/stream", http) as ws:
        assert ws.receive_json(timeout=10) == {
            "type": "error",
            "data": "sandbox is not running (status: paused)",
        }
    resume(http, capsule)
    with connect_ws(f"/v1/capsules/{capsule}/exec/stream", http) as ws:
        ws.send_json({"type": "bogus"})
        assert ws.receive_json(timeout=10)["type"] == "error"


def test_process_stream_attach_by_tag_and_pid(http: httpx.Client, capsule: str) -> None:
    base = f"/v1/capsules/{capsule}"
    r = http.post(
        base + "/exec",
        json={
            "cmd": "/bin/sh",
            "args": ["-c", "echo early; sleep 0.7; echo late; exit 4"],
            "background": True,
            "tag": "worker",
        },
    )
    pid = r.json()["pid"]
    time.sleep(0.25)  # "early" is printed before we attach
    with connect_ws(f"{base}/processes/worker/stream", http) as ws:
        frames = frames_until_exit(ws)
    assert frames[0] == {"type": "start", "pid": pid}
    assert text_of(frames, "stdout") == "late\n"  # only output produced after attaching
    assert frames[-1] == {"type": "exit", "exit_code": 4}
    r = http.post(base + "/exec", json={"cmd": "sleep", "args": ["300"], "background": True})
    with connect_ws(f"{base}/processes/{r.json()['pid']}/stream", http) as ws:
        assert ws.receive_json(timeout=10)["type"] == "start"
        http.delete(f"{base}/processes/{r.json()['pid']}")
        assert frames_until_exit(ws)[-1]["type"] == "exit"
    with connect_ws(f"{base}/processes/nope/stream", http) as ws:
        frame = ws.receive_json(timeout=10)
    assert frame["type"] == "error" and frame["data"].startswith("failed to connect to process")


def _pty_output(
    ws: WebSocketSession, until: str, limit: int = 300
) -> tuple[str, list[dict[str, Any]]]:
    """Collect binary output until ``until`` shows up; return it and any JSON frames seen."""
    buf = b""
    controls: list[dict[str, Any]] = []
    for _ in range(limit):
        event = ws.receive(timeout=10)
        if isinstance(event, BytesMessage):
            buf += bytes(event.data)
        elif isinstance(event, TextMessage):
            controls.append(json.loads(event.data))
            if controls[-1]["type"] == "exit" and until == "<exit>":
                return buf.decode("utf-8", "replace"), controls
        if until != "<exit>" and until in buf.decode("utf-8", "replace"):
            return buf.decode("utf-8", "replace"), controls
    raise AssertionError(f"{until!r} not seen in {buf!r} {controls}")


@needs_bwrap
def test_pty_start_input_resize_reconnect_and_kill(http: httpx.Client, capsule: str) -> None:
    url = f"/v1/capsules/{capsule}/pty"
    with connect_ws(url, http) as ws:
        ws.send_json(
            {
                "type": "start",
                "cmd": "/bin/bash",
                "args": ["--norc", "--noprofile"],
                "cols": 90,
                "rows": 30,
                "envs": {"PS1": "$ "},
            }
        )
        started = ws.receive_json(timeout=10)
        assert (
            started["type"] == "started"
            and started["tag"].startswith("pty-")
            and started["pid"] > 0
        )
        ws.send_bytes(b"echo h''i; tty\n")
        out, _ = _pty_output(ws, "/dev/pts/")
        assert "hi" in out
        ws.send_json({"type": "resize", "cols": 123, "rows": 45})
        time.sleep(0.05)
        ws.send_json({"type": "input", "data": base64.b64encode(b"stty size\n").decode()})
        out, _ = _pty_output(ws, "45 123")
    # The session survives the disconnect; connect re-attaches and names it again.
    procs = http.get(f"/v1/capsules/{capsule}/processes").json()["processes"]
    assert started["tag"] in [p.get("tag") for p in procs]
    with connect_ws(url, http) as ws:
        ws.send_json({"type": "connect", "tag": started["tag"]})
        assert ws.receive_json(timeout=10) == {
            "type": "started",
            "tag": started["tag"],
            "pid": started["pid"],
        }
        ws.send_bytes(b"echo again$((1+1))\n")
        _pty_output(ws, "again2")
        ws.send_json({"type": "kill"})
        _, controls = _pty_output(ws, "<exit>")
        assert controls[-1]["type"] == "exit"
    with connect_ws(url, http) as ws:
        ws.send_json({"type": "connect", "tag": started["tag"]})
        frame = ws.receive_json(timeout=10)
    assert frame["type"] == "error" and frame["fatal"] is True


@needs_bwrap
def test_pty_exit_code_and_ping(http: httpx.Client, capsule: str) -> None:
    with connect_ws(f"/v1/capsules/{capsule}/pty", http) as ws:
        ws.send_json({"type": "start", "cmd": "/bin/sh", "args": ["-c", "sleep 1.2; exit 7"]})
        assert ws.receive_json(timeout=10)["type"] == "started"
        _, controls = _pty_output(ws, "<exit>")
    assert {"type": "ping"} in controls  # the test server pings every second
    assert controls[-1] == {"type": "exit", "exit_code": 7}


def _events_until(lines: Any, last: tuple[str, str], ids: tuple[str, ...]) -> list[dict[str, Any]]:
    """Events about ``ids`` up to the first whose ``(event, resource id)`` is ``last``."""
    seen: list[dict[str, Any]] = []
    for _, line in zip(range(1000), lines, strict=False):
        if line.startswith("data: "):
            event = json.loads(line[6:])
            if event.get("resource", {}).get("id") in ids:
                seen.append(event)
                if (event["event"], event["resource"]["id"]) == last:
                    return seen
    raise AssertionError(f"no {last} event in {[e['event'] for e in seen]}")


def _changes(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (e["metadata"]["from"], e["metadata"]["to"])
        for e in events
        if e["event"] == "capsule.state.changed"
    ]


def test_sse_events(server: LocalServer, http: httpx.Client) -> None:
    with http.stream("GET", "/v1/events/stream", timeout=10) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = resp.iter_lines()
        assert next(lines) == "event: connected"
        first = json.loads(next(lines).removeprefix("data: "))
        assert first["event"] == "connected" and "outcome" not in first
        cid = create(http)
        pause(http, cid)
        resume(http, cid)
        destroy(http, cid)
        seen = _events_until(lines, ("capsule.destroy", cid), (cid,))
    actions = [e["event"] for e in seen if e["event"] != "capsule.state.changed"]
    assert actions == ["capsule.create", "capsule.pause", "capsule.resume", "capsule.destroy"]
    # Every status change, the transitional ones included.
    assert _changes(seen) == [
        ("pending", "starting"),
        ("starting", "running"),
        ("running", "pausing"),
        ("pausing", "paused"),
        ("paused", "resuming"),
        ("resuming", "running"),
        ("running", "stopping"),
        ("stopping", "stopped"),
    ]
    for event in seen:
        assert event["resource"] == {"id": cid, "type": "capsule"}
        assert event["actor"]["type"] == "api_key"
        assert event["sandbox"]["id"] == cid and event["timestamp"].endswith("Z")
        if event["event"] == "capsule.state.changed":
            assert "outcome" not in event
            assert event["sandbox"]["status"] == event["metadata"]["to"]
        else:
            assert event["outcome"] == "success" and "error" not in event
    assert [e["sandbox"]["status"] for e in seen if e["event"] == "capsule.pause"] == ["paused"]


def test_sse_keepalive(http: httpx.Client) -> None:
    with http.stream("GET", "/v1/events/stream", timeout=10) as resp:
        lines = resp.iter_lines()
        assert next(lines) == "event: connected"
        assert any(line.startswith(":keepalive") for _, line in zip(range(20), lines, strict=False))


def test_sse_snapshot_events(http: httpx.Client, capsule: str) -> None:
    name = f"sse-{capsule[-6:]}"
    with http.stream("GET", "/v1/events/stream", timeout=10) as resp:
        lines = resp.iter_lines()
        assert next(lines) == "event: connected"
        snapshot(http, capsule, name)
        assert http.delete(f"/v1/snapshots/{name}").status_code == 204
        seen = _events_until(lines, ("template.snapshot.delete", name), (name, capsule))
    assert [e["event"] for e in seen] == [
        "capsule.state.changed",
        "template.snapshot.create",
        "capsule.state.changed",
        "template.snapshot.delete",
    ]
    assert _changes(seen) == [("running", "snapshotting"), ("snapshotting", "running")]
    created, deleted = seen[1], seen[3]
    assert created["outcome"] == deleted["outcome"] == "success"
    assert created["resource"] == {"id": name, "type": "template"}
    assert created["metadata"] == {"sandbox_id": capsule}


# --- event ids and Last-Event-ID (a wrenn.local addition: the platform sends no ids) ----
def _frames(lines: Any, count: int) -> list[tuple[int, str, dict[str, Any]]]:
    """The next ``count`` SSE frames as ``(id, event, data)``, keepalives skipped."""
    out: list[tuple[int, str, dict[str, Any]]] = []
    fields: dict[str, str] = {}
    for _, line in zip(range(1000), lines, strict=False):
        if line.startswith(":"):
            continue
        if line:
            name, _, value = line.partition(": ")
            fields[name] = value
            continue
        if fields:
            out.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))
            fields = {}
            if len(out) == count:
                return out
    raise AssertionError(f"only {len(out)} of {count} frames")


def test_sse_ids_increase_and_last_event_id_replays_what_was_missed(
    http: httpx.Client,
) -> None:
    with http.stream("GET", "/v1/events/stream", timeout=10) as resp:
        [(start, kind, _)] = _frames(resp.iter_lines(), 1)
    assert kind == "connected"
    cid = create(http)  # published while no stream is open
    destroy(http, cid)
    resume = {"Last-Event-ID": str(start)}
    with http.stream("GET", "/v1/events/stream", headers=resume, timeout=10) as resp:
        lines = resp.iter_lines()
        [(resumed_from, kind, _)] = _frames(lines, 1)
        assert (resumed_from, kind) == (start, "connected")  # everything after it follows
        replayed = _frames(lines, 6)
    assert [event_id for event_id, _, _ in replayed] == list(range(start + 1, start + 7))
    assert [data["resource"]["id"] for _, _, data in replayed] == [cid] * 6
    assert {kind for _, kind, _ in replayed} >= {"capsule.create", "capsule.destroy"}


@pytest.mark.parametrize("last_event_id", ["not-an-id", "-1", "99999999999"])
def test_sse_an_id_it_cannot_resume_from_starts_live_after_the_newest(
    http: httpx.Client, last_event_id: str
) -> None:
    with http.stream("GET", "/v1/events/stream", timeout=10) as resp:
        [(newest, _, _)] = _frames(resp.iter_lines(), 1)
    headers = {"Last-Event-ID": last_event_id}
    with http.stream("GET", "/v1/events/stream", headers=headers, timeout=10) as resp:
        lines = resp.iter_lines()
        [(resumed_from, kind, _)] = _frames(lines, 1)
        # Another id than the one asked for: the client knows it has a gap.
        assert (resumed_from, kind) == (newest, "connected")
        cid = create(http)
        [(next_id, _, data)] = _frames(lines, 1)
    destroy(http, cid)
    assert next_id == newest + 1 and data["resource"]["id"] == cid  # no replay first
