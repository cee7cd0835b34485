"""The low-level client against an in-memory transport: wire shapes, errors, retries."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.helpers import (
    API_KEY,
    BASE_URL,
    CAPSULE,
    TEMPLATE,
    Recorder,
    error_response,
    json_response,
)
from tests.reliability.fixtures import SleepRecorder
from wrenn import (
    AsyncWrennClient,
    WrennAgentError,
    WrennCapsuleStateError,
    WrennClientClosedError,
    WrennConflictError,
    WrennConnectionError,
    WrennHostUnavailableError,
    WrennNotFoundError,
    WrennRateLimitError,
    WrennResponseValidationError,
    WrennTimeoutError,
    WrennValidationError,
)
from wrenn.models import Status, TemplateType

pytestmark = pytest.mark.anyio

CID = CAPSULE["id"]


def make_client(recorder: Recorder, **options: object) -> AsyncWrennClient:
    http = httpx.AsyncClient(transport=recorder.transport())
    return AsyncWrennClient(api_key=API_KEY, base_url=BASE_URL, http_client=http, **options)  # type: ignore[arg-type]


async def test_create_sends_only_given_fields_and_decodes_the_capsule() -> None:
    recorder = Recorder({"POST /v1/capsules": json_response(201, CAPSULE)})
    async with make_client(recorder) as client:
        capsule = await client.capsules.create(template="minimal", timeout_sec=0)
        await client.http.aclose()
    request = recorder.last
    sent = json.loads(request.content)
    labels = sent.pop("metadata")
    assert sent == {"template": "minimal", "timeout_sec": 0}
    # the SDK's own labels: who created it (this process) and which call
    assert set(labels) == {"wrenn.owner", "wrenn.create"}
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-api-key"] == API_KEY
    assert request.headers["user-agent"].startswith("wrenn-python/")
    assert request.url.path == "/api/v1/capsules"
    assert capsule.id == CID
    assert capsule.status is Status.running
    assert capsule.created_at is not None and capsule.created_at.tzinfo is not None


async def test_every_capsule_route_uses_the_documented_method_path_and_status() -> None:
    paused = {**CAPSULE, "status": "paused"}
    recorder = Recorder(
        {
            "GET /v1/capsules": json_response(200, [CAPSULE, paused]),
            f"GET /v1/capsules/{CID}": json_response(200, CAPSULE),
            f"DELETE /v1/capsules/{CID}": httpx.Response(204),
            f"POST /v1/capsules/{CID}/pause": json_response(200, paused),
            f"POST /v1/capsules/{CID}/resume": json_response(200, CAPSULE),
            f"POST /v1/capsules/{CID}/ping": httpx.Response(204),
            "GET /v1/capsules/stats": json_response(
                200,
                {
                    "range": "1h",
                    "current": {"running_count": 1, "vcpus_reserved": 1, "memory_mb_reserved": 512},
                    "peaks": {"running_count": 2, "vcpus": 2, "memory_mb": 1024},
                    "series": {
                        "labels": ["2026-11-28T10:00:00Z"],
                        "running": [1],
                        "vcpus": [1],
                        "memory_mb": [512],
                    },
                },
            ),
            "GET /v1/capsules/usage": json_response(
                200,
                {
                    "from": "2026-11-01",
                    "to": "2026-11-28",
                    "points": [{"date": "2026-11-01", "cpu_minutes": 1.5, "ram_mb_minutes": 768.0}],
                },
            ),
            f"GET /v1/capsules/{CID}/metrics": json_response(
                200,
                {
                    "sandbox_id": CID,
                    "range": "10m",
                    "points": [
                        {"timestamp_unix": 1, "cpu_pct": 2.5, "mem_bytes": 3, "disk_bytes": 4}
                    ],
                },
            ),
        }
    )
    async with make_client(recorder) as client:
        listed = await client.capsules.list()
        assert [c.status for c in listed] == [Status.running, Status.paused]
        assert (await client.capsules.get(CID)).id == CID
        assert await client.capsules.destroy(CID) is None
        assert (await client.capsules.pause(CID)).status is Status.paused
        assert (await client.capsules.resume(CID)).status is Status.running
        assert await client.capsules.ping(CID) is None
        stats = await client.capsules.stats(range="1h")
        assert recorder.last.url.params["range"] == "1h"
        assert stats.current is not None and stats.current.running_count == 1
        usage = await client.capsules.usage(from_="2026-11-01", to="2026-11-28")
        assert dict(recorder.last.url.params) == {"from": "2026-11-01", "to": "2026-11-28"}
        assert usage.points is not None and usage.points[0].cpu_minutes == 1.5
        metrics = await client.capsules.metrics(CID, range="10m")
        assert metrics.points is not None and metrics.points[0].cpu_pct == 2.5
        await client.http.aclose()
    # pause, resume and ping read no body, exactly like the official SDK
    assert all(
        r.content == b""
        for r in recorder.requests
        if r.url.path.endswith(("pause", "resume", "ping"))
    )


async def test_snapshot_routes() -> None:
    recorder = Recorder(
        {
            "POST /v1/snapshots": json_response(201, TEMPLATE),
            "GET /v1/snapshots": json_response(
                200, [TEMPLATE, {"name": "minimal", "type": "base", "platform": True}]
            ),
            "DELETE /v1/snapshots/my-snapshot": httpx.Response(204),
        }
    )
    async with make_client(recorder) as client:
        template = await client.snapshots.create(capsule_id=CID, name="my-snapshot", overwrite=True)
        assert json.loads(recorder.last.content) == {"sandbox_id": CID, "name": "my-snapshot"}
        assert recorder.last.url.params["overwrite"] == "true"
        assert template.type is TemplateType.snapshot
        await client.snapshots.create(capsule_id=CID)
        # Waiting needs the name in advance (a 0.2.2 server answers with the capsule):
        # the SDK picks a fresh one.
        sent = json.loads(recorder.last.content)
        assert sent["sandbox_id"] == CID and sent["name"].startswith("snapshot-")
        assert "overwrite" not in recorder.last.url.params
        await client.snapshots.create(capsule_id=CID, wait=False)
        assert json.loads(recorder.last.content) == {"sandbox_id": CID}
        templates = await client.snapshots.list(type="base")
        assert recorder.last.url.params["type"] == "base"
        assert [t.name for t in templates] == ["my-snapshot", "minimal"]
        await client.snapshots.delete("my-snapshot")
        await client.http.aclose()


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("a/b", "a%2Fb"),
        ("x?range=1", "x%3Frange=1"),
        ("x#f", "x%23f"),
        ("%2e%2e", "%252e%252e"),
        ("ü", "%C3%BC"),
    ],
)
async def test_path_parameters_are_one_encoded_segment(value: str, encoded: str) -> None:
    recorder = Recorder()
    async with make_client(recorder, max_retries=0) as client:
        with pytest.raises(WrennNotFoundError):
            await client.capsules.get(value)
        await client.http.aclose()
    assert recorder.last.url.raw_path == f"/api/v1/capsules/{encoded}".encode()


@pytest.mark.parametrize("value", [".", "..", "", "   ", "a\r\nb", "x\x00"])
async def test_dangerous_ids_are_refused_before_any_request(value: str) -> None:
    recorder = Recorder()
    async with make_client(recorder) as client:
        with pytest.raises(ValueError):
            await client.capsules.destroy(value)
        with pytest.raises(ValueError):
            await client.snapshots.delete(value)
        await client.http.aclose()
    assert recorder.requests == []


async def test_wrong_argument_types_raise_type_error_before_any_request() -> None:
    recorder = Recorder()
    async with make_client(recorder) as client:
        with pytest.raises(TypeError):
            await client.capsules.get(123)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await client.capsules.usage(from_=20261101)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await client.capsules.create(timeout_sec=-1)
        with pytest.raises(TypeError):
            await client.capsules.create(vcpus="2")  # type: ignore[arg-type]
        await client.http.aclose()
    assert recorder.requests == []


@pytest.mark.parametrize(
    ("response", "cls", "code"),
    [
        (
            error_response(400, "invalid_request", "invalid sandbox ID"),
            WrennValidationError,
            "invalid_request",
        ),
        (error_response(404, "not_found", "sandbox not found"), WrennNotFoundError, "not_found"),
        (
            error_response(409, "invalid_state", "resource is not running"),
            WrennConflictError,
            "invalid_state",
        ),
        (
            error_response(409, "template_name_taken", "taken"),
            WrennConflictError,
            "template_name_taken",
        ),
        (
            error_response(503, "no_hosts_available", "no servers"),
            WrennHostUnavailableError,
            "no_hosts_available",
        ),
        (error_response(500, "agent_error", "exec failed"), WrennAgentError, "agent_error"),
        (httpx.Response(404, text="404 page not found"), WrennNotFoundError, None),
        (json_response(409, {"error": "str"}), WrennConflictError, None),
        (json_response(400, ["x"]), WrennValidationError, None),
    ],
)
async def test_errors_are_typed_by_code_then_status(
    response: httpx.Response, cls: type, code: str | None
) -> None:
    recorder = Recorder({f"POST /v1/capsules/{CID}/pause": response})
    async with make_client(recorder) as client:
        with pytest.raises(cls) as info:
            await client.capsules.pause(CID)
        await client.http.aclose()
    assert info.value.code == code
    assert info.value.status_code == response.status_code
    assert recorder.count(f"POST /v1/capsules/{CID}/pause") == 1


async def test_html_error_page_gives_a_bounded_message_and_no_key() -> None:
    page = "<html><body>" + ("bad gateway " * 5000) + API_KEY + "</body></html>"
    recorder = Recorder(
        {"POST /v1/capsules": httpx.Response(502, text=page, headers={"content-type": "text/html"})}
    )
    async with make_client(recorder) as client:
        with pytest.raises(WrennAgentError) as info:
            await client.capsules.create()
        await client.http.aclose()
    assert len(str(info.value)) <= 2048
    assert "text/html" in str(info.value)
    assert API_KEY not in repr(info.value.body)
    assert recorder.count("POST /v1/capsules") == 1


async def test_get_is_retried_on_503_with_a_retry_count_header(sleeps: SleepRecorder) -> None:
    recorder = Recorder(
        {
            f"GET /v1/capsules/{CID}": [
                error_response(503, "host_unavailable", "x"),
                error_response(503, "host_unavailable", "x"),
                json_response(200, CAPSULE),
            ]
        }
    )
    async with make_client(recorder) as client:
        capsule = await client.capsules.get(CID)
        await client.http.aclose()
    assert capsule.id == CID
    assert [r.headers["x-wrenn-retry-count"] for r in recorder.requests] == ["0", "1", "2"]
    assert len(sleeps.delays) == 2
    assert 0.25 <= sleeps.delays[0] <= 0.5 and 0.5 <= sleeps.delays[1] <= 1.0


async def test_exhausted_retries_raise_with_retries_taken(sleeps: SleepRecorder) -> None:
    recorder = Recorder({"GET /v1/capsules": error_response(503, "host_unavailable", "down")})
    async with make_client(recorder, max_retries=2) as client:
        with pytest.raises(WrennHostUnavailableError) as info:
            await client.capsules.list()
        assert info.value.retries_taken == 2
        assert recorder.count("GET /v1/capsules") == 3
        with pytest.raises(WrennHostUnavailableError):
            await client.with_options(max_retries=0).capsules.list()
        assert recorder.count("GET /v1/capsules") == 4
        await client.http.aclose()


async def test_post_is_not_retried_after_it_may_have_been_applied(sleeps: SleepRecorder) -> None:
    def reset(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset", request=request)

    recorder = Recorder(
        {
            "POST /v1/capsules": reset,
            f"POST /v1/capsules/{CID}/pause": error_response(502, "agent_error", "x"),
        }
    )
    async with make_client(recorder) as client:
        with pytest.raises(WrennConnectionError) as info:
            await client.capsules.create()
        assert info.value.request_sent is True
        with pytest.raises(WrennAgentError):
            await client.capsules.pause(CID)
        await client.http.aclose()
    assert recorder.count("POST /v1/capsules") == 1
    assert recorder.count(f"POST /v1/capsules/{CID}/pause") == 1
    assert sleeps.delays == []


async def test_post_is_retried_when_provably_unsent_or_rate_limited(sleeps: SleepRecorder) -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    recorder = Recorder(
        {
            "POST /v1/capsules": [refused, json_response(201, CAPSULE)],
            "POST /v1/snapshots": [
                error_response(429, "rate_limited", "slow down", {"Retry-After": "1"}),
                json_response(201, TEMPLATE),
            ],
        }
    )
    async with make_client(recorder) as client:
        assert (await client.capsules.create()).id == CID
        assert (await client.snapshots.create(CID)).name == "my-snapshot"
        await client.http.aclose()
    assert recorder.count("POST /v1/capsules") == 2
    assert recorder.count("POST /v1/snapshots") == 2
    assert sleeps.delays[1] == 1.0


async def test_long_retry_after_is_raised_not_slept(sleeps: SleepRecorder) -> None:
    recorder = Recorder(
        {"GET /v1/capsules": error_response(429, "rate_limited", "later", {"Retry-After": "3600"})}
    )
    async with make_client(recorder) as client:
        with pytest.raises(WrennRateLimitError) as info:
            await client.capsules.list()
        await client.http.aclose()
    assert info.value.retry_after == 3600
    assert recorder.count("GET /v1/capsules") == 1
    assert sleeps.delays == []


async def test_delete_that_timed_out_then_404s_counts_as_done(sleeps: SleepRecorder) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    recorder = Recorder(
        {
            f"DELETE /v1/capsules/{CID}": [slow, error_response(404, "not_found", "gone")],
            "DELETE /v1/snapshots/gone": error_response(404, "not_found", "gone"),
        }
    )
    async with make_client(recorder) as client:
        assert await client.capsules.destroy(CID) is None
        with pytest.raises(WrennNotFoundError):
            await client.snapshots.delete("gone")  # a 404 on the first attempt is real
        await client.http.aclose()
    assert recorder.count(f"DELETE /v1/capsules/{CID}") == 2


async def test_timeouts_are_typed_and_finite(sleeps: SleepRecorder) -> None:
    seen: list[dict[str, float]] = []

    def hang(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        raise httpx.ReadTimeout("timed out", request=request)

    recorder = Recorder({"GET /v1/capsules": hang})
    async with make_client(recorder, max_retries=1) as client:
        with pytest.raises(WrennTimeoutError):
            await client.capsules.list()
        with pytest.raises(WrennTimeoutError):
            await client.with_options(timeout=2.5, max_retries=0).capsules.list()
        await client.http.aclose()
    assert all(value is not None and value > 0 for phases in seen for value in phases.values())
    assert seen[-1]["read"] == 2.5


@pytest.mark.parametrize("body", [b"", b"null", b"[1]", b"{not json", b"<html>portal</html>"])
async def test_bad_bodies_raise_a_validation_error(body: bytes) -> None:
    recorder = Recorder({f"GET /v1/capsules/{CID}": httpx.Response(200, content=body)})
    async with make_client(recorder) as client:
        with pytest.raises(WrennResponseValidationError) as info:
            await client.capsules.get(CID)
        await client.http.aclose()
    assert info.value.status_code == 200
    assert isinstance(info.value.__cause__, Exception) or body == b""


async def test_unknown_statuses_and_fields_are_kept_not_fatal() -> None:
    odd = {**CAPSULE, "status": "migrating", "new_field": {"x": 1}}
    recorder = Recorder(
        {"GET /v1/capsules": json_response(200, [CAPSULE, odd, {**CAPSULE, "status": "pausing"}])}
    )
    async with make_client(recorder) as client:
        capsules = await client.capsules.list()
        await client.http.aclose()
    assert len(capsules) == 3
    assert capsules[1].status == "migrating"
    assert all(capsules[1].status != known for known in Status)
    assert capsules[2].status is Status.pausing


async def test_wrong_field_type_names_the_field() -> None:
    recorder = Recorder(
        {f"GET /v1/capsules/{CID}": json_response(200, {**CAPSULE, "vcpus": "two"})}
    )
    async with make_client(recorder) as client:
        with pytest.raises(WrennResponseValidationError, match="vcpus"):
            await client.capsules.get(CID)
        await client.http.aclose()


async def test_wait_polls_until_the_status_is_reached() -> None:
    recorder = Recorder(
        {
            f"GET /v1/capsules/{CID}": [
                json_response(200, {**CAPSULE, "status": "pending"}),
                json_response(200, CAPSULE),
            ]
        }
    )
    async with make_client(recorder) as client:
        capsule = await client.capsules.wait(CID, status="running", timeout=5, interval=0.01)
        await client.http.aclose()
    assert capsule.status is Status.running
    assert recorder.count(f"GET /v1/capsules/{CID}") == 2


async def test_wait_fails_fast_on_a_terminal_status_and_times_out() -> None:
    recorder = Recorder(
        {
            f"GET /v1/capsules/{CID}": json_response(200, {**CAPSULE, "status": "error"}),
            "GET /v1/capsules/cl-slow": json_response(
                200, {**CAPSULE, "id": "cl-slow", "status": "pending"}
            ),
        }
    )
    async with make_client(recorder) as client:
        with pytest.raises(WrennCapsuleStateError):
            await client.capsules.wait(CID, timeout=5, interval=0.01)
        with pytest.raises(WrennTimeoutError, match="pending"):
            await client.capsules.wait("cl-slow", timeout=0.05, interval=0.01)
        await client.http.aclose()


async def test_redirects_are_never_followed() -> None:
    recorder = Recorder(
        {"GET /v1/capsules": httpx.Response(307, headers={"Location": "http://127.0.0.2/steal"})}
    )
    async with make_client(recorder) as client:
        with pytest.raises(Exception) as info:
            await client.capsules.list()
        await client.http.aclose()
    assert info.value.status_code == 307  # type: ignore[attr-defined]
    assert len(recorder.requests) == 1


async def test_closed_client_refuses_calls() -> None:
    recorder = Recorder({"GET /v1/capsules": json_response(200, [])})
    client = make_client(recorder)
    copy = client.with_options(max_retries=0)
    await copy.aclose()  # a copy does not close the shared pool
    assert await client.capsules.list() == []
    await client.aclose()
    with pytest.raises(WrennClientClosedError):
        await client.capsules.list()
    with pytest.raises(WrennClientClosedError):
        await copy.capsules.list()
    await client.http.aclose()


async def test_event_stream_yields_typed_events_and_closes() -> None:
    body = (
        b": keepalive\n\n"
        b'event: connected\ndata: {"event":"connected","timestamp":"2026-11-28T10:00:00Z"}\n\n'
        b'event: capsule.create\nid: 7\ndata: {"event":"capsule.create","outcome":"success",'
        b'"resource":{"id":"cl-1","type":"capsule"},"actor":{"type":"api_key","id":"key-1","name":"ci"},'
        b'"sandbox":{"id":"cl-1","status":"running"},"timestamp":"2026-11-28T10:00:01Z"}\n\n'
        b'data: {"event":"capsule.migrated","extra":1}\n\n'
        # cut mid-event: not terminated by a blank line, so discarded (WHATWG), never raised
        b'event: capsule.pause\ndata: {"event":"capsule.pa'
    )
    recorder = Recorder(
        {
            "GET /v1/events/stream": httpx.Response(
                200, content=body, headers={"content-type": "text/event-stream"}
            )
        }
    )
    async with make_client(recorder) as client:
        # reconnect=False: the body ends and so does the stream, as in the official SDK
        async with client.events.stream(reconnect=False) as stream:
            events = [event async for event in stream]
            assert stream.last_event_id == "7"
        # iterating directly, without a context manager, works as in the official SDK
        direct = [event.event async for event in client.events.stream(reconnect=False)]
        await client.http.aclose()
    assert [e.event for e in events] == ["connected", "capsule.create", "capsule.migrated"]
    assert events[1].sandbox is not None and events[1].sandbox.id == "cl-1"
    assert direct == [e.event for e in events]
    assert recorder.last.headers["accept"] == "text/event-stream"
    assert recorder.last.extensions["timeout"]["read"] is not None
