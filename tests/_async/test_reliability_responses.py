"""RELIABILITY.md §3 E: bad server responses (BR-01 .. BR-12)."""

from __future__ import annotations

import tracemalloc

import httpx
import msgspec
import pytest

from tests._async.clients import client_for
from tests.faultserver import FaultServer
from tests.reliability.fixtures import (
    CID,
    EndlessJSON,
    SleepRecorder,
    in_flight,
    timed,
)
from wrenn import (
    WrennAgentError,
    WrennAPIStatusError,
    WrennAuthenticationError,
    WrennConflictError,
    WrennConnectionError,
    WrennError,
    WrennForbiddenError,
    WrennHostUnavailableError,
    WrennInternalError,
    WrennNotFoundError,
    WrennRateLimitError,
    WrennRedirectError,
    WrennResponseTooLargeError,
    WrennResponseValidationError,
    WrennStreamError,
    WrennStreamInterruptedError,
    WrennStreamTimeoutError,
    WrennValidationError,
)
from wrenn._async import _websocket
from wrenn._async.commands import AsyncCommands
from wrenn._process import StreamExitEvent
from wrenn.models import Status

pytestmark = pytest.mark.anyio


async def test_BR01_malformed_json_is_a_typed_validation_error(srv: FaultServer) -> None:
    async with client_for(srv.url_for("badjson")) as client:
        with pytest.raises(WrennResponseValidationError) as info:
            await client.capsules.get(CID)
    assert info.value.status_code == 200
    assert isinstance(info.value.body, str) and len(info.value.body) <= 1024
    assert isinstance(info.value.__cause__, msgspec.DecodeError)


async def test_BR02_html_is_rejected_and_json_as_text_is_accepted(srv: FaultServer) -> None:
    async with client_for(srv.url_for("html200")) as client:
        with pytest.raises(WrennResponseValidationError) as info:
            await client.capsules.get(CID)
    assert "text/html" in str(info.value)
    async with client_for(srv.url_for("textjson")) as client:
        capsule = await client.capsules.get(CID)
    assert capsule.id == CID


async def test_BR03_a_huge_html_502_is_bounded_and_retried_only_for_get(
    srv: FaultServer, sleeps: SleepRecorder
) -> None:
    url = srv.url_for("html502-pad")
    async with client_for(url) as client:
        with pytest.raises(WrennAgentError) as info:
            await client.capsules.get(CID)
    assert isinstance(info.value, WrennAPIStatusError) and info.value.status_code == 502
    assert len(str(info.value)) <= 2048
    assert srv.count(url) == 3
    url = srv.url_for("html502-pad")
    async with client_for(url) as client:
        with pytest.raises(WrennAgentError):
            await client.capsules.create(template="minimal")
    # the POST once; a 5xx may have made a capsule, so it is looked for (GETs) after
    assert [r.method for r in srv.requests(url)].count("POST") == 1


@pytest.mark.parametrize(
    ("scenario", "operation"),
    [
        ("empty200", "get"),
        ("empty200", "list"),
        ("null200", "get"),
        ("null200", "list"),
        ("list200", "get"),
        ("obj200", "list"),
    ],
)
async def test_BR04_empty_null_and_wrong_shapes_are_typed_errors(
    srv: FaultServer, scenario: str, operation: str
) -> None:
    async with client_for(srv.url_for(scenario)) as client:
        with pytest.raises(WrennResponseValidationError):
            if operation == "get":
                await client.capsules.get(CID)
            else:
                await client.capsules.list()
        # An empty body is fine where the API documents 204.
        await client.capsules.destroy(CID) if scenario == "empty200" else None


async def test_BR05_unknown_status_and_fields_parse(srv: FaultServer) -> None:
    async with client_for(srv.url_for("unknownstatus")) as client:
        capsule = await client.capsules.get(CID)
        listed = await client.capsules.list()
    assert capsule.status == "migrating"
    assert capsule.status is not None and capsule.status.value == "migrating"
    assert all(capsule.status != known for known in Status)
    assert len(listed) == 3
    assert [c.status for c in listed] == ["migrating", Status.pausing, Status.running]
    for known in ("pausing", "snapshotting", "resuming", "stopping"):
        assert Status(known).value == known


async def test_BR06_wrong_field_type_names_the_field(srv: FaultServer) -> None:
    async with client_for(srv.url_for("wrongtype")) as client:
        with pytest.raises(WrennResponseValidationError) as info:
            await client.capsules.get(CID)
        assert "vcpus" in str(info.value)
        with pytest.raises(WrennResponseValidationError) as info:
            await client.capsules.list()
        assert "vcpus" in str(info.value)


_BY_STATUS: dict[int, type[WrennAPIStatusError]] = {
    400: WrennValidationError,
    401: WrennAuthenticationError,
    403: WrennForbiddenError,
    404: WrennNotFoundError,
    409: WrennConflictError,
    429: WrennRateLimitError,
    500: WrennInternalError,
    502: WrennAgentError,
    503: WrennHostUnavailableError,
}


@pytest.mark.parametrize("body", ["errstr", "errlist", "errempty", "errblank", "errhtml"])
async def test_BR07_odd_error_bodies_map_by_status(srv: FaultServer, body: str) -> None:
    for status, cls in _BY_STATUS.items():
        async with client_for(srv.url_for(f"{body}-{status}"), max_retries=0) as client:
            with pytest.raises(WrennAPIStatusError) as info:
                await client.capsules.get(CID)
        assert type(info.value) is cls, (body, status, info.value)
        assert info.value.status_code == status


@pytest.mark.parametrize("scenario", ["redirect", "redirect301"])
async def test_BR08_redirects_are_typed_errors_and_never_followed(
    srv: FaultServer, scenario: str
) -> None:
    for operation in ("get", "create"):
        url = srv.url_for(scenario)
        async with client_for(url) as client:
            with pytest.raises(WrennRedirectError) as info:
                if operation == "get":
                    await client.capsules.get(CID)
                else:
                    await client.capsules.create(template="minimal")
        assert 300 <= (info.value.status_code or 0) < 400
        records = srv.requests(url)
        assert len(records) == 1
        assert all(r.local[0] == "127.0.0.1" for r in records)
        assert "redirected=1" not in records[0].target


@pytest.mark.parametrize("scenario", ["truncated", "reset"])
async def test_BR09_truncated_and_reset_bodies(
    srv: FaultServer, sleeps: SleepRecorder, scenario: str
) -> None:
    url = srv.url_for(scenario)
    async with client_for(url) as client:
        with pytest.raises(WrennConnectionError) as info:
            await client.capsules.get(CID)
    assert info.value.retries_taken == 2 and srv.count(url) == 3
    url = srv.url_for(scenario)
    async with client_for(url) as client:
        with pytest.raises(WrennConnectionError):
            await client.capsules.create(template="minimal")
    # the POST once; the capsule it may have made is looked for (GETs) after
    assert [r.method for r in srv.requests(url)].count("POST") == 1


async def test_BR10_a_huge_body_is_capped_in_bounded_memory(srv: FaultServer) -> None:
    async with client_for(srv.url_for("huge-256")) as client:
        tracemalloc.start()
        try:
            with pytest.raises(WrennResponseTooLargeError):
                await client.capsules.list()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 64 * 1024 * 1024, peak
        assert in_flight(client.http) == 0
    # The same without a Content-Length (chunked): the cap stops reading at 16 MiB.
    body = EndlessJSON(256)
    http = httpx.AsyncClient(
        transport=httpx.MockTransport(
            lambda request: httpx.Response(
                200, headers={"Content-Type": "application/json"}, stream=body
            )
        )
    )
    async with client_for("http://127.0.0.1:9/api", http_client=http) as client:
        tracemalloc.start()
        try:
            with pytest.raises(WrennResponseTooLargeError):
                await client.capsules.list()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    await http.aclose()
    assert peak < 64 * 1024 * 1024, peak
    assert body.closed and body.sent <= 17


async def test_BR11_sse_unknown_kinds_and_malformed_frames(srv: FaultServer) -> None:
    async with (
        client_for(srv.url_for("sse-newevent")) as client,
        client.events.stream(reconnect=False) as events,
    ):
        kinds = [event.event async for event in events]
    assert kinds == ["capsule.migrated", "capsule.create"]
    async with (
        client_for(srv.url_for("sse-bad")) as client,
        client.events.stream(reconnect=False) as events,
    ):
        with pytest.raises(WrennStreamError):
            async for _ in events:
                pass
    async with (
        client_for(srv.url_for("sse-idretry")) as client,
        client.events.stream(reconnect=False) as events,
    ):
        received = [event async for event in events]
        assert events.last_event_id == "evt-2"
    assert len(received) == 2


@pytest.mark.parametrize("scenario", ["wstrunc", "wsclose", "wsbadjson", "wsreset"])
async def test_BR12_broken_websocket_streams_raise_typed_errors(
    srv: FaultServer, scenario: str
) -> None:
    elapsed = timed()
    async with client_for(srv.url_for(scenario)) as client:
        with pytest.raises(WrennStreamError) as info:
            async with AsyncCommands(client, CID).stream("echo hi") as stream:
                async for _ in stream:
                    pass
    assert elapsed() <= 1.0
    if scenario == "wsclose":
        assert isinstance(info.value, WrennStreamInterruptedError)
        assert info.value.close_code == 1011


async def test_BR12_a_silent_websocket_peer_is_detected_by_ping(
    srv: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_websocket, "WS_PING_INTERVAL", 0.3)
    monkeypatch.setattr(_websocket, "WS_PING_TIMEOUT", 0.3)
    elapsed = timed()
    async with client_for(srv.url_for("wshang")) as client:
        with pytest.raises(WrennStreamTimeoutError):
            async with AsyncCommands(client, CID).stream("echo hi") as stream:
                async for _ in stream:
                    pass
    assert elapsed() <= 0.3 + 0.3 + 0.5


@pytest.mark.parametrize(
    ("scenario", "cls"),
    [
        ("ws401", WrennAuthenticationError),
        ("ws503", WrennHostUnavailableError),
        ("ws502html", WrennAgentError),
    ],
)
async def test_BR12_websocket_upgrade_failures_map_to_status_errors(
    srv: FaultServer, scenario: str, cls: type[WrennError]
) -> None:
    async with client_for(srv.url_for(scenario), max_retries=0) as client:
        with pytest.raises(cls):
            async with AsyncCommands(client, CID).stream("echo hi") as stream:
                async for _ in stream:
                    pass


async def test_BR12_only_wsok_ends_normally_after_exit(srv: FaultServer) -> None:
    async with (
        client_for(srv.url_for("wsok")) as client,
        AsyncCommands(client, CID).stream("echo hi") as stream,
    ):
        events = [event async for event in stream]
    assert isinstance(events[-1], StreamExitEvent) and stream.exit_code == 0
