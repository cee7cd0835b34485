"""RELIABILITY.md §3 D, the rows tied to one runtime: CC-02 (threads), CC-03 (fork)
and CC-05 (the sync/async parity table)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import anyio
import httpx
import pytest

from tests.faultserver import FaultServer
from tests.reliability.fixtures import CID, KEY, SleepRecorder, running_fault_server
from wrenn import AsyncWrennClient, WrennClient, WrennError
from wrenn._async import _requester as async_requester
from wrenn._sync import _requester as sync_requester


@pytest.fixture(scope="module")
def srv() -> Iterator[FaultServer]:
    with running_fault_server(hang_limit=10.0) as server:
        yield server


@pytest.mark.parametrize("scenario", ["echo", "mix"])
def test_CC02_one_sync_client_shared_by_16_threads(
    srv: FaultServer, scenario: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync_requester, "sleep", SleepRecorder(real=0.01).sleep)
    url = srv.url_for(scenario)
    mismatches: list[str] = []
    untyped: list[BaseException] = []
    with WrennClient(api_key=KEY, base_url=url) as client:

        def worker(index: int) -> None:
            for call in range(50):
                capsule_id = f"cl-t{index}-c{call}"
                try:
                    capsule = client.capsules.get(capsule_id)
                except WrennError:
                    continue
                except BaseException as exc:
                    untyped.append(exc)
                    continue
                if capsule.id != capsule_id:
                    mismatches.append(f"{capsule_id} -> {capsule.id}")

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not any(thread.is_alive() for thread in threads)
    assert mismatches == [] and untyped == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() is POSIX only")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads running
def test_CC03_fork_gives_the_child_its_own_sockets(srv: FaultServer) -> None:
    url = srv.url_for("echo")
    with WrennClient(api_key=KEY, base_url=url) as client:
        client.capsules.get("cl-parent-warmup")  # a keep-alive connection now exists
        parent_conns = {r.conn_id for r in srv.requests(url)}
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: report mismatches through the exit status, never return
            code = 1
            try:
                os.close(read)
                bad = _forty_calls(client, "child")
                code = 0 if bad == 0 else 2
            finally:
                os._exit(code)
        os.close(write)
        parent_bad = _forty_calls(client, "parent")
        _, status = os.waitpid(pid, 0)
        os.close(read)
    assert parent_bad == 0
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    child = [r for r in srv.requests(url) if "-child-" in r.target]
    assert len(child) == 40
    assert not ({r.conn_id for r in child} & parent_conns)


def _forty_calls(client: WrennClient, who: str) -> int:
    bad = 0
    results: dict[str, str] = {}

    def call(index: int) -> None:
        capsule_id = f"cl-{who}-{index}"
        results[capsule_id] = client.capsules.get(capsule_id).id

    threads = [threading.Thread(target=call, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    for capsule_id, got in results.items():
        bad += capsule_id != got
    return bad + (40 - len(results))


_PARITY_SCENARIOS = [
    "flaky-503-2",
    "flaky-429-2",
    "status-503",
    "status-400",
    "status-401",
    "status-404",
    "status-409",
    "status-429-ra3600",
    "reset",
    "drop",
    "truncated",
    "hang",
    "badjson",
    "html200",
    "html502-pad",
    "empty200",
    "null200",
    "list200",
    "wrongtype",
    "redirect",
    "errstr-500",
    "huge-32",
    "textjson",
    "unknownstatus",
]
_TIMEOUT = httpx.Timeout(5.0, read=0.1)


def _outcome_sync(srv: FaultServer, scenario: str) -> tuple[str, int]:
    url = srv.url_for(scenario)
    with WrennClient(api_key=KEY, base_url=url, timeout=_TIMEOUT, total_timeout=5.0) as client:
        try:
            client.capsules.get(CID)
            name = "ok"
        except WrennError as exc:
            name = type(exc).__name__
    return name, srv.count(url)


async def _outcome_async(srv: FaultServer, scenario: str) -> tuple[str, int]:
    url = srv.url_for(scenario)
    async with AsyncWrennClient(
        api_key=KEY, base_url=url, timeout=_TIMEOUT, total_timeout=5.0
    ) as client:
        try:
            await client.capsules.get(CID)
            name = "ok"
        except WrennError as exc:
            name = type(exc).__name__
    return name, srv.count(url)


def test_CC05_sync_and_async_clients_fail_identically(
    srv: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = SleepRecorder()
    monkeypatch.setattr(async_requester, "asleep", recorder.asleep)
    monkeypatch.setattr(sync_requester, "sleep", recorder.sleep)
    table: list[tuple[str, tuple[str, int], tuple[str, int], tuple[str, int]]] = []
    for scenario in _PARITY_SCENARIOS:
        sync = _outcome_sync(srv, scenario)
        on_asyncio = anyio.run(_outcome_async, srv, scenario, backend="asyncio")
        on_trio = anyio.run(_outcome_async, srv, scenario, backend="trio")
        table.append((scenario, sync, on_asyncio, on_trio))
    lines = [f"{'scenario':<20} {'sync':<36} {'asyncio':<36} {'trio':<36}"]
    for scenario, sync, on_asyncio, on_trio in table:
        cells = [f"{name} x{attempts}" for name, attempts in (sync, on_asyncio, on_trio)]
        lines.append(f"{scenario:<20} {cells[0]:<36} {cells[1]:<36} {cells[2]:<36}")
    print("\nCC-05 parity table (exception class x server attempts)\n" + "\n".join(lines))
    assert [row[1] for row in table] == [row[2] for row in table] == [row[3] for row in table]
