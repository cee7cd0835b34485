"""Fault injection in wrenn.local (``server.faults``), over a real loopback socket.

Every fault is count-based: each test sets a rule, makes exactly the calls it
counts, and looks at what the client got and at ``rule.hits``. No assertion is
about time; every loop is bounded. The rules are cleared after every test.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from httpx_ws import WebSocketDisconnect, WebSocketNetworkError, connect_ws

from wrenn.local import (
    CutStream,
    Delay,
    DiskFull,
    Faults,
    LocalServer,
    Reset,
    Respond,
    SlowTransition,
)

from .helpers import create, destroy, error_of, wait_status

pytestmark = pytest.mark.local

OTHER = "cl-" + "0" * 25  # a well-formed id of no capsule


@pytest.fixture(scope="module")
def srv() -> Iterator[LocalServer]:
    with LocalServer(sse_keepalive=0.2) as server:
        yield server


@pytest.fixture(scope="module")
def api(srv: LocalServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=srv.base_url, headers={"X-API-Key": srv.api_key}, timeout=30
    ) as client:
        yield client


@pytest.fixture(autouse=True)
def faults(srv: LocalServer) -> Iterator[Faults]:
    srv.faults.clear()
    yield srv.faults
    srv.faults.clear()


@pytest.fixture(scope="module")
def capsule(api: httpx.Client) -> Iterator[str]:
    capsule_id = create(api)
    try:
        yield capsule_id
    finally:
        destroy(api, capsule_id)


def write(api: httpx.Client, capsule: str, path: str, data: bytes = b"hi") -> httpx.Response:
    return api.post(
        f"/v1/capsules/{capsule}/files/write", files={"file": ("f", data)}, data={"path": path}
    )


# answers ------------------------------------------------------------------------------
def test_respond_answers_the_next_n_calls_with_the_envelope(
    api: httpx.Client, faults: Faults
) -> None:
    rule = faults.respond("GET /v1/capsules", 429, retry_after=2, times=2)
    answers = [api.get("/v1/capsules") for _ in range(3)]
    assert [r.status_code for r in answers] == [429, 429, 200]
    assert answers[0].json() == {"error": {"code": "rate_limited", "message": "too many requests"}}
    assert answers[0].headers["retry-after"] == "2"
    assert answers[0].headers["content-type"] == "application/json"
    assert rule.hits == 2 and rule.remaining == 0 and not rule.active
    assert faults.rules == ()


def test_respond_matches_templates_globs_methods_and_capsules(
    api: httpx.Client, faults: Faults, capsule: str
) -> None:
    other = faults.respond("GET /v1/capsules/{id}", 503, capsule_id=OTHER, times=None)
    mine = faults.respond(
        "GET /v1/capsules/{id}", 503, code="custom", message="go away", capsule_id=capsule
    )
    assert api.get("/v1/capsules").status_code == 200  # another route
    assert api.post(f"/v1/capsules/{capsule}/ping").status_code == 204  # another method
    assert error_of(api.get(f"/v1/capsules/{capsule}")) == (503, "custom", "go away")
    assert api.get(f"/v1/capsules/{capsule}").status_code == 200
    assert (other.hits, mine.hits) == (0, 1)
    other.remove()
    glob = faults.respond("* /v1/capsules/*/files/*", 500, retry_after=0.5, times=None)
    listed = api.post(f"/v1/capsules/{capsule}/files/list", json={"path": "/"})
    assert error_of(listed) == (500, "internal_error", "internal server error")
    assert listed.headers["retry-after"] == "0.5"
    assert api.post(f"/v1/capsules/{capsule}/exec", json={"cmd": "true"}).status_code == 200
    assert glob.hits == 1 and glob.remaining is None and glob.active


def test_an_unauthenticated_request_never_fires_a_fault(
    srv: LocalServer, api: httpx.Client, faults: Faults, capsule: str
) -> None:
    rule = faults.respond("* /v1/*", 503, times=None)
    cut = faults.cut_stream("exec", 0)
    with httpx.Client(base_url=srv.base_url, headers={"X-API-Key": "wrn_wrong"}) as bad:
        assert error_of(bad.get("/v1/capsules"))[:2] == (401, "unauthorized")
        with connect_ws(f"/v1/capsules/{capsule}/exec/stream", bad) as ws:
            assert ws.receive_json(timeout=10) == {"type": "error", "data": "authentication failed"}
    assert api.get("/health").status_code == 200  # outside /v1/: never matched
    assert (rule.hits, cut.hits) == (0, 0)
    assert api.get("/v1/capsules").status_code == 503
    assert rule.hits == 1


def test_a_websocket_upgrade_can_be_refused_with_a_status(
    srv: LocalServer, faults: Faults, capsule: str
) -> None:
    faults.respond("GET /v1/capsules/{id}/exec/stream", 429, retry_after=1)
    upgrade = {
        "X-API-Key": srv.api_key,
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    # A client of its own: the server closes a connection whose upgrade it refused,
    # and a pooled connection closing under the next test's request fails that request.
    with httpx.Client(base_url=srv.base_url, timeout=30) as fresh:
        refused = fresh.get(f"/v1/capsules/{capsule}/exec/stream", headers=upgrade)
    assert error_of(refused)[:2] == (429, "rate_limited")
    assert refused.headers["retry-after"] == "1"


# dropped connections ------------------------------------------------------------------
def test_reset_at_request_drops_the_call_before_it_is_handled(
    api: httpx.Client, faults: Faults, capsule: str
) -> None:
    rule = faults.reset("POST /v1/capsules/{id}/files/mkdir")
    with pytest.raises(httpx.TransportError):
        api.post(f"/v1/capsules/{capsule}/files/mkdir", json={"path": "/root/never"})
    assert rule.hits == 1
    listed = api.post(f"/v1/capsules/{capsule}/files/list", json={"path": "/root"}).json()
    assert "never" not in [e["name"] for e in listed["entries"]]


def test_reset_at_response_handles_the_call_then_drops_the_answer(
    api: httpx.Client, faults: Faults, capsule: str
) -> None:
    faults.reset("POST /v1/capsules/{id}/files/mkdir", at="response")
    with pytest.raises(httpx.TransportError):
        api.post(f"/v1/capsules/{capsule}/files/mkdir", json={"path": "/root/applied"})
    # The call took effect although its answer was lost: what a retried POST must expect.
    again = api.post(f"/v1/capsules/{capsule}/files/mkdir", json={"path": "/root/applied"})
    assert error_of(again)[:2] == (409, "already_exists")


def test_reset_at_body_sends_half_a_body(api: httpx.Client, faults: Faults) -> None:
    faults.reset("GET /v1/capsules/stats", at="body", times=2)
    for _ in range(2):
        with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
            api.get("/v1/capsules/stats")
    assert api.get("/v1/capsules/stats").status_code == 200


def test_a_delay_holds_the_call_then_it_is_answered(api: httpx.Client, faults: Faults) -> None:
    rule = faults.delay("GET /v1/capsules", 0.05)
    assert api.get("/v1/capsules").status_code == 200
    assert rule.hits == 1
    faults.delay("GET /v1/capsules", 5.0)
    with pytest.raises(httpx.ReadTimeout):
        api.get("/v1/capsules", timeout=0.2)  # 25 times shorter than the delay
    assert api.get("/v1/capsules").status_code == 200


def test_a_delay_and_an_answer_both_apply_to_one_call(api: httpx.Client, faults: Faults) -> None:
    delay = faults.delay("GET /v1/capsules", 0.01)
    answer = faults.respond("GET /v1/capsules", 503)
    assert api.get("/v1/capsules").status_code == 503
    assert (delay.hits, answer.hits) == (1, 1)


# streams -------------------------------------------------------------------------------
def read_events(api: httpx.Client, limit: int = 50) -> tuple[list[bytes], Exception | None]:
    got: list[bytes] = []
    try:
        with api.stream("GET", "/v1/events/stream") as response:
            for chunk in response.iter_raw():
                got.append(chunk)
                if len(got) >= limit:
                    break
    except httpx.TransportError as exc:
        return got, exc
    return got, None


def test_the_event_stream_is_cut_after_k_events(api: httpx.Client, faults: Faults) -> None:
    rule = faults.cut_stream("events", 1)
    got, error = read_events(api)
    assert isinstance(error, httpx.RemoteProtocolError), (got, error)
    events = [c for c in b"".join(got).split(b"\n\n") if c.startswith(b"event:")]
    assert len(events) == 1 and events[0].startswith(b"event: connected\n")
    assert rule.hits == 1
    faults.cut_stream("events", 0)  # after the headers: not even `connected`
    got, error = read_events(api)
    assert isinstance(error, httpx.RemoteProtocolError) and got == []
    got, error = read_events(api, limit=3)  # no rule left: keepalives flow
    assert error is None and b":keepalive" in b"".join(got)


def exec_frames(api: httpx.Client, capsule: str, script: str) -> tuple[list[Any], Exception]:
    frames: list[Any] = []
    with connect_ws(f"/v1/capsules/{capsule}/exec/stream", api) as ws:
        ws.send_json({"type": "start", "cmd": "/bin/sh", "args": ["-c", script]})
        for _ in range(50):
            try:
                frames.append(ws.receive_json(timeout=10))
            except (WebSocketDisconnect, WebSocketNetworkError) as exc:
                return frames, exc
    raise AssertionError(f"the stream was not cut: {frames}")


def test_the_exec_stream_is_cut_after_k_frames(
    api: httpx.Client, faults: Faults, capsule: str
) -> None:
    rule = faults.add(CutStream("exec", 1, capsule_id=capsule))
    frames, error = exec_frames(api, capsule, "echo one; sleep 0.2; echo two")
    assert [f["type"] for f in frames] == ["start"]
    assert isinstance(error, WebSocketNetworkError)  # no close frame: a dropped connection
    assert rule.hits == 1 and not rule.active
    assert api.get(f"/v1/capsules/{capsule}").status_code == 200  # the server is fine


def test_a_websocket_upgrade_can_be_reset(api: httpx.Client, faults: Faults, capsule: str) -> None:
    rule = faults.reset("GET /v1/capsules/{id}/exec/stream")
    with (
        pytest.raises(httpx.TransportError),
        connect_ws(f"/v1/capsules/{capsule}/exec/stream", api),
    ):
        pass
    assert rule.hits == 1
    # The cut comes after the 2nd frame, here the exit: the client has it all first.
    faults.cut_stream("exec", 2)
    with connect_ws(f"/v1/capsules/{capsule}/exec/stream", api) as ws:
        ws.send_json({"type": "start", "cmd": "true"})
        assert ws.receive_json(timeout=10)["type"] == "start"
        assert ws.receive_json(timeout=10) == {"type": "exit", "exit_code": 0}


def test_a_download_is_cut_after_k_chunks(api: httpx.Client, faults: Faults, capsule: str) -> None:
    assert write(api, capsule, "/root/big", b"z" * (256 * 1024)).status_code == 204
    faults.cut_stream("download", 1, capsule_id=capsule)
    got = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        api.stream(
            "POST", f"/v1/capsules/{capsule}/files/stream/read", json={"path": "/root/big"}
        ) as response,
    ):
        for chunk in response.iter_raw():
            got += chunk
    assert 0 < len(got) < 256 * 1024
    whole = api.post(f"/v1/capsules/{capsule}/files/stream/read", json={"path": "/root/big"})
    assert len(whole.content) == 256 * 1024


# lifecycle -----------------------------------------------------------------------------
def test_a_held_transition_stays_until_released(
    api: httpx.Client, faults: Faults, capsule: str
) -> None:
    rule = faults.add(SlowTransition("pause", None, capsule_id=capsule))
    assert api.post(f"/v1/capsules/{capsule}/pause").json()["status"] == "pausing"
    assert rule.hits == 1  # fired before the 202
    # Held: however often it is looked at, it is still pausing (bounded looks).
    for _ in range(5):
        assert api.get(f"/v1/capsules/{capsule}").json()["status"] == "pausing"
    rule.release()
    assert wait_status(api, capsule)["status"] == "paused"
    # Removing (here: clear) releases a hold as well.
    faults.slow_transition("resume", None)
    assert api.post(f"/v1/capsules/{capsule}/resume").json()["status"] == "resuming"
    assert api.get(f"/v1/capsules/{capsule}").json()["status"] == "resuming"
    faults.clear()
    assert wait_status(api, capsule)["status"] == "running"


def test_a_held_create_boots_once_released(api: httpx.Client, faults: Faults) -> None:
    rule = faults.slow_transition("create", None)
    capsule = api.post("/v1/capsules", json={}).json()["id"]
    try:
        assert api.get(f"/v1/capsules/{capsule}").json()["status"] == "starting"
        assert error_of(api.delete(f"/v1/capsules/{capsule}"))[0] == 409  # still starting
        rule.release()
        assert wait_status(api, capsule)["status"] == "running"
    finally:
        destroy(api, capsule)


def test_a_slowed_transition_settles_after_its_extra_time(
    api: httpx.Client, faults: Faults, capsule: str
) -> None:
    other = faults.slow_transition("pause", 30.0, capsule_id=OTHER)
    mine = faults.slow_transition("pause", 0.05, capsule_id=capsule)
    api.post(f"/v1/capsules/{capsule}/pause")
    assert wait_status(api, capsule)["status"] == "paused"
    assert (other.hits, mine.hits) == (0, 1)
    api.post(f"/v1/capsules/{capsule}/resume")
    assert wait_status(api, capsule)["status"] == "running"


# the disk --------------------------------------------------------------------------------
def test_a_full_disk_fails_writes_through_the_files_api(
    api: httpx.Client, faults: Faults, capsule: str
) -> None:
    other = faults.add(DiskFull(capsule_id=OTHER))
    assert write(api, capsule, "/root/before").status_code == 204
    full = faults.disk_full(capsule_id=capsule)
    assert error_of(write(api, capsule, "/root/x")) == (
        502,
        "agent_error",
        "write /root/x: no space left on device",
    )
    streamed = api.post(
        f"/v1/capsules/{capsule}/files/stream/write",
        files={"file": ("f", b"data")},
        data={"path": "/root/y"},
    )
    assert error_of(streamed)[2] == "write /root/y: no space left on device"
    made = api.post(f"/v1/capsules/{capsule}/files/mkdir", json={"path": "/root/d"})
    assert error_of(made) == (502, "agent_error", "mkdir /root/d: no space left on device")
    # Reads still work, and validation still comes first.
    assert api.post(f"/v1/capsules/{capsule}/files/read", json={"path": "/root/before"}).content
    assert error_of(api.post(f"/v1/capsules/{capsule}/files/mkdir", json={}))[0] == 400
    assert full.hits == 3 and full.active and other.hits == 0
    full.remove()
    assert write(api, capsule, "/root/x").status_code == 204
    names = api.post(f"/v1/capsules/{capsule}/files/list", json={"path": "/root"}).json()
    assert "y" not in [e["name"] for e in names["entries"]]  # nothing was written


# the API itself ------------------------------------------------------------------------
def test_inject_holds_rules_for_the_block_only(api: httpx.Client, faults: Faults) -> None:
    with faults.inject(Respond("GET /v1/capsules", 503, times=None)) as rule:
        assert api.get("/v1/capsules").status_code == 503
        assert faults.rules == (rule,)
    assert not rule.active and api.get("/v1/capsules").status_code == 200
    with (
        pytest.raises(RuntimeError, match="boom"),
        faults.inject(
            Delay("GET /v1/capsules", 0.01), Respond("GET /v1/capsules/stats", 503)
        ) as rules,
    ):
        assert len(rules) == 2
        raise RuntimeError("boom")
    assert faults.rules == ()


def test_rules_are_counted_exactly_under_concurrent_calls(srv: LocalServer, faults: Faults) -> None:
    rule = faults.respond("GET /v1/capsules", 503, times=30)
    statuses: list[int] = []
    lock = threading.Lock()

    def caller() -> None:
        with httpx.Client(
            base_url=srv.base_url, headers={"X-API-Key": srv.api_key}, timeout=30
        ) as client:
            for _ in range(15):
                status = client.get("/v1/capsules").status_code
                with lock:
                    statuses.append(status)

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for thread in threads:
        thread.start()
    # Rules come and go from this thread meanwhile; they never disturb the count.
    for _ in range(20):
        with faults.inject(Respond("GET /v1/never/*", 500)):
            pass
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [200] * 30 + [503] * 30
    assert rule.hits == 30


@pytest.mark.anyio
async def test_the_api_works_from_async_code(srv: LocalServer, anyio_backend: str) -> None:
    async with httpx.AsyncClient(
        base_url=srv.base_url, headers={"X-API-Key": srv.api_key}
    ) as client:
        with srv.faults.inject(Respond("GET /v1/capsules", 429, times=None)) as rule:
            assert (await client.get("/v1/capsules")).status_code == 429
        assert (await client.get("/v1/capsules")).status_code == 200
    assert rule.hits == 1


BAD: list[tuple[Callable[[], Any], type[Exception], str]] = [
    (lambda: Respond("/v1/capsules", 429), ValueError, "METHOD PATH"),
    (lambda: Respond("FETCH /v1/capsules", 429), ValueError, "method must be one of"),
    (lambda: Respond("GET /health", 429), ValueError, "must start with /v1/"),
    (lambda: Respond("GET /v1/capsules/{cid}", 429), ValueError, "not a route template"),
    (lambda: Respond("POST /v1/capsules/{id}", 429), ValueError, "answers DELETE, GET"),
    (lambda: Respond(b"GET /v1/capsules", 429), TypeError, "match must be a string"),  # type: ignore[arg-type]
    (lambda: Respond("GET /v1/capsules", 200), ValueError, "400-599"),
    (lambda: Respond("GET /v1/capsules", "429"), TypeError, "status must be an int"),  # type: ignore[arg-type]
    (lambda: Respond("GET /v1/capsules", 429, retry_after=-1), ValueError, "retry_after"),
    (lambda: Respond("GET /v1/capsules", 429, code=""), ValueError, "code must be"),
    (lambda: Respond("GET /v1/capsules", 429, times=0), ValueError, "times must be >= 1"),
    (lambda: Respond("GET /v1/capsules", 429, times=True), TypeError, "times must be an int"),
    (lambda: Respond("GET /v1/capsules", 429, capsule_id="x"), ValueError, "capsule_id"),
    (lambda: Reset("GET /v1/capsules", at="later"), ValueError, "at must be one of"),
    (lambda: Delay("GET /v1/capsules", float("nan")), ValueError, "seconds must be between"),
    (lambda: Delay("GET /v1/capsules", 1e9), ValueError, "seconds must be between"),
    (lambda: CutStream("stdout", 1), ValueError, "stream must be one of"),
    (lambda: CutStream("exec", -1), ValueError, "after must be an int"),
    (lambda: CutStream("events", 1, capsule_id=OTHER), ValueError, "belongs to no capsule"),
    (lambda: SlowTransition("reboot", 1.0), ValueError, "action must be one of"),
    (lambda: SlowTransition("create", 1.0, capsule_id=OTHER), ValueError, "no capsule id yet"),
    (lambda: SlowTransition("pause", "1"), TypeError, "seconds must be a number"),  # type: ignore[arg-type]
    (lambda: DiskFull(capsule_id="cl-short"), ValueError, "capsule_id"),
    (lambda: Faults().add("a rule"), TypeError, "expected a fault rule"),  # type: ignore[type-var]
]


@pytest.mark.parametrize(("make", "error", "text"), BAD, ids=[t for _, _, t in BAD])
def test_bad_fault_specs_raise_clear_errors(
    make: Callable[[], Any], error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text):
        make()


def test_a_rule_is_in_force_once(faults: Faults) -> None:
    rule = faults.respond("GET /v1/capsules", 503)
    with pytest.raises(ValueError, match="already in force"):
        faults.add(rule)
    with pytest.raises(ValueError, match="already in force"):
        Faults().add(rule)
    with pytest.raises(TypeError, match="at least one"), faults.inject():
        pass
    rule.remove()
    rule.remove()  # removing twice is harmless
    assert faults.rules == () and "0/1 fired" in repr(rule)
