"""RELIABILITY.md §3 A: retries and backoff (RB-01 .. RB-12) against the fault server."""

from __future__ import annotations

import statistics

import httpx
import pytest

from tests._async.clients import client_for
from tests.faultserver import FaultServer, rawra
from tests.helpers import error_response
from tests.reliability.fixtures import (
    CID,
    SleepRecorder,
    agather,
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
    WrennGatewayTimeoutError,
    WrennHostUnavailableError,
    WrennInternalError,
    WrennNotFoundError,
    WrennRateLimitError,
    WrennTimeoutError,
    WrennValidationError,
)
from wrenn._async import capsules, snapshots
from wrenn._async.commands import AsyncCommands
from wrenn._async.files import AsyncFiles

pytestmark = pytest.mark.anyio


def retry_counts(srv: FaultServer, url: str) -> list[str | None]:
    return [r.header("X-Wrenn-Retry-Count") for r in srv.requests(url)]


@pytest.mark.parametrize("status", [503, 502, 504, 500, 429, 408])
async def test_RB01_get_retries_transient_statuses(
    srv: FaultServer, sleeps: SleepRecorder, status: int
) -> None:
    for operation in ("get", "list", "stats"):
        url = srv.url_for(f"flaky-{status}-2")
        async with client_for(url) as client:
            if operation == "get":
                result: object = await client.capsules.get(CID)
            elif operation == "list":
                result = await client.capsules.list()
            else:
                result = await client.capsules.stats()
        assert result is not None
        assert srv.count(url) == 3, (operation, status)
        assert retry_counts(srv, url) == ["0", "1", "2"]
    assert len(sleeps.delays) == 6


async def test_RB02_always_503_exhausts_retries_then_raises(
    srv: FaultServer, sleeps: SleepRecorder
) -> None:
    url = srv.url_for("status-503")
    async with client_for(url, max_retries=2) as client:
        with pytest.raises(WrennHostUnavailableError) as info:
            await client.capsules.get(CID)
    assert srv.count(url) == 3
    assert info.value.status_code == 503 and info.value.retries_taken == 2

    url = srv.url_for("status-503")
    async with client_for(url, max_retries=0) as client:
        with pytest.raises(WrennHostUnavailableError) as info:
            await client.capsules.get(CID)
    assert srv.count(url) == 1 and info.value.retries_taken == 0


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, WrennValidationError),
        (401, WrennAuthenticationError),
        (403, WrennForbiddenError),
        (404, WrennNotFoundError),
        (409, WrennConflictError),
        (422, WrennValidationError),
    ],
)
async def test_RB03_client_errors_are_never_retried(
    srv: FaultServer, sleeps: SleepRecorder, status: int, cls: type[WrennError]
) -> None:
    for method in ("GET", "POST", "DELETE"):
        url = srv.url_for(f"status-{status}")
        async with client_for(url) as client:
            with pytest.raises(cls) as info:
                if method == "GET":
                    await client.capsules.get(CID)
                elif method == "POST":
                    await client.capsules.create(template="minimal")
                else:
                    await client.capsules.destroy(CID)
        assert type(info.value) is cls
        assert info.value.status_code == status
        assert srv.count(url) == 1, (method, status)
    assert sleeps.delays == []


_RB04_FAULTS = {
    "reset": WrennConnectionError,
    "drop": WrennConnectionError,
    "truncated": WrennConnectionError,
    "hang": WrennTimeoutError,
    "status-500": WrennInternalError,
    "status-502": WrennAgentError,
    "status-504": WrennGatewayTimeoutError,
}


@pytest.mark.parametrize("fault", list(_RB04_FAULTS))
async def test_RB04_posts_are_sent_exactly_once(
    srv: FaultServer, sleeps: SleepRecorder, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    # The long read budgets of create/pause/snapshot/write are shortened so that a
    # hung server trips the read timeout quickly.
    for module, name in (
        (capsules, "CREATE_READ_TIMEOUT"),
        (capsules, "PAUSE_RESUME_READ_TIMEOUT"),
        (snapshots, "SNAPSHOT_READ_TIMEOUT"),
    ):
        monkeypatch.setattr(module, name, 0.1)
    from wrenn._async import files

    monkeypatch.setattr(files, "FILE_TRANSFER_READ_TIMEOUT", 0.1)
    operations = ["create", "exec", "pause", "resume", "snapshot", "write"]
    for operation in operations:
        url = srv.url_for(fault)
        async with client_for(url, timeout=httpx.Timeout(5.0, read=0.1)) as client:
            with pytest.raises(WrennError) as info:
                if operation == "create":
                    await client.capsules.create(template="minimal")
                elif operation == "exec":
                    await AsyncCommands(client, CID).run("true", background=True)
                elif operation == "pause":
                    await client.capsules.pause(CID)
                elif operation == "resume":
                    await client.capsules.resume(CID)
                elif operation == "snapshot":
                    await client.snapshots.create(CID, name="snap")
                else:
                    await AsyncFiles(client, CID).write("/tmp/x", b"data")
        expected = _RB04_FAULTS[fault]
        assert isinstance(info.value, expected), (operation, fault, info.value)
        assert isinstance(info.value, (WrennConnectionError, WrennAPIStatusError))
        if isinstance(info.value, WrennConnectionError):
            assert info.value.request_sent is True  # "may have been applied"
        sent = [(r.method, r.path) for r in srv.requests(url)]
        assert [m for m, _ in sent].count("POST") == 1, (operation, fault, sent)
        # A create that may have been applied is looked up by its label (and destroyed
        # if found): only reads follow the one POST.
        lookups = [(m, p) for m, p in sent if m != "POST"]
        assert all(m == "GET" and p.rstrip("/").endswith("/v1/capsules") for m, p in lookups)
        assert not lookups or operation == "create", (operation, sent)
    assert sleeps.delays == []


async def test_RB05_provably_unsent_posts_are_retried(srv: FaultServer) -> None:
    # (a) the port refuses connections for the first 300 ms: nothing was sent.
    url = srv.refusing_url(300)
    async with client_for(url, total_timeout=10.0) as client:
        capsule = await client.capsules.create(template="minimal")
    assert capsule.template == "minimal"
    assert srv.count(url) == 1
    # (b) an explicit 429 rejection with Retry-After: 1.
    url = srv.url_for("flaky-429-1-ra1")
    async with client_for(url) as client:
        await client.capsules.create(template="minimal")
    posts = srv.requests(url)
    assert len(posts) == 2
    assert posts[1].time - posts[0].time >= 1.0


@pytest.mark.parametrize(
    ("scenario", "value"),
    [
        ("status-503-ra2", 2.0),
        ("status-429-ra2", 2.0),
        ("status-503-radate2", 2.0),
        ("status-429-radate2", 2.0),
        ("status-503-rams1500", 1.5),
        ("status-429-rams1500", 1.5),
    ],
)
async def test_RB06_retry_after_is_honoured(
    srv: FaultServer, sleeps: SleepRecorder, scenario: str, value: float
) -> None:
    url = srv.url_for(scenario)
    async with client_for(url, max_retries=1) as client:
        with pytest.raises(WrennAPIStatusError):
            await client.capsules.get(CID)
    assert srv.count(url) == 2
    assert len(sleeps.delays) == 1
    assert value <= sleeps.delays[0] <= value + 0.5, sleeps.delays


@pytest.mark.parametrize(
    "modifier",
    [
        "-ra-10",
        "-ra0",
        f"-{rawra('abc')}",
        f"-{rawra('')}",
        f"-{rawra('99999999999999999999')}",
        "-radate-30",
    ],
)
async def test_RB07_unusable_retry_after_falls_back_to_backoff(
    srv: FaultServer, sleeps: SleepRecorder, modifier: str
) -> None:
    url = srv.url_for(f"status-503{modifier}")
    async with client_for(url) as client:
        with pytest.raises(WrennHostUnavailableError) as info:
            await client.capsules.get(CID)
    assert srv.count(url) == 3
    assert info.value.retries_taken == 2
    assert 0.25 <= sleeps.delays[0] <= 0.5 and 0.5 <= sleeps.delays[1] <= 1.0, sleeps.delays


async def test_RB08_long_retry_after_is_not_waited_for(
    srv: FaultServer, sleeps: SleepRecorder
) -> None:
    url = srv.url_for("status-429-ra3600")
    async with client_for(url) as client:
        with pytest.raises(WrennRateLimitError) as info:
            await client.capsules.get(CID)
    assert srv.count(url) == 1
    assert info.value.retry_after == 3600
    assert sleeps.delays == []


async def test_RB09_backoff_has_bounded_full_jitter(sleeps: SleepRecorder) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return error_response(503, "host_unavailable", "down")

    clients = 200
    for index in range(clients):
        retries = 8 if index % 20 == 0 else 2  # a few long runs reach the 8 s cap
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with client_for(
            "http://127.0.0.1:9/api", http_client=http, max_retries=retries
        ) as client:
            with pytest.raises(WrennHostUnavailableError):
                await client.capsules.get(CID)
        await http.aclose()
    # The recorder saw each client's delays in order; split them per client again.
    delays = list(sleeps.delays)
    per_client: list[list[float]] = []
    for index in range(clients):
        retries = 8 if index % 20 == 0 else 2
        per_client.append(delays[:retries])
        delays = delays[retries:]
    assert delays == []
    for series in per_client:
        for n, delay in enumerate(series):
            cap = min(0.5 * 2**n, 8.0)
            assert 0.5 * cap <= delay <= cap, (n, delay)
    assert max(sleeps.delays) <= 8.0
    first = [series[0] for series in per_client]
    assert statistics.stdev(first) > 0.02


async def test_RB10_retry_budget_caps_attempts_during_an_outage(
    srv: FaultServer, sleeps: SleepRecorder
) -> None:
    base = srv.url_for("ok").rsplit("/s/", 1)[0]
    async with client_for(base) as client:
        budget = client._requester.budget
        capacity = budget.capacity
        url = srv.url_for("status-503")
        outage = client_for(url)
        outage._requester = client._requester  # one client, one budget
        outage._init_resources()
        for _ in range(200):
            with pytest.raises(WrennHostUnavailableError):
                await outage.capsules.get(CID)
        sequential = srv.count(url)
        assert sequential <= 200 + capacity // 5, sequential
        results = await agather([lambda: outage.capsules.get(CID) for _ in range(500)])
        assert all(isinstance(r, WrennHostUnavailableError) for r in results)
        total = srv.count(url)
        assert total <= 700 + capacity // 5, total
        assert total < 3 * 700
        # Successes refill the bucket; then retries resume.
        for _ in range(50):
            await client.capsules.get(CID)
        flaky = srv.url_for("flaky-503-1")
        recovering = client_for(flaky)
        recovering._requester = client._requester
        recovering._init_resources()
        await recovering.capsules.get(CID)
        assert srv.count(flaky) == 2


async def test_RB11_a_backoff_past_the_deadline_is_not_started(
    srv: FaultServer, sleeps: SleepRecorder
) -> None:
    url = srv.url_for("status-503-ra5")
    elapsed = timed()
    async with client_for(url, total_timeout=2.0) as client:
        with pytest.raises(WrennHostUnavailableError):
            await client.capsules.get(CID)
    assert elapsed() <= 2.3
    assert srv.count(url) == 1
    assert sleeps.delays == []


async def test_RB12_a_404_on_a_delete_retry_means_already_deleted(
    srv: FaultServer, sleeps: SleepRecorder
) -> None:
    # Scaled from the row's slowdelete-2 / read 1 s: the ratio is what matters.
    timeout = httpx.Timeout(5.0, read=0.3)
    url = srv.url_for("slowdelete-0.6")
    async with client_for(url, timeout=timeout) as client:
        await client.capsules.destroy(CID)
    assert [r.method for r in srv.requests(url)] == ["DELETE", "DELETE"]
    assert srv.flags(url).get("deleted")
    url = srv.url_for("slowdelete-0.6")
    async with client_for(url, timeout=timeout) as client:
        await client.snapshots.delete("my-snapshot")
    assert srv.count(url) == 2
    # A 404 on the first attempt is a real "not found".
    url = srv.url_for("status-404")
    async with client_for(url) as client:
        with pytest.raises(WrennNotFoundError):
            await client.capsules.destroy(CID)
        with pytest.raises(WrennNotFoundError):
            await client.snapshots.delete("my-snapshot")
    assert srv.count(url) == 2
