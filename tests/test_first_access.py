"""The clients' resources are built on first access (wrenn/_first_access.py) and then
behave as the attributes ``__init__`` used to set: one object per client, assignable,
built anew when a client is initialised again; a ``with_options()`` copy gets its own
resources but waits through its original's transition waiter."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from tests.helpers import API_KEY, BASE_URL
from wrenn import AsyncWrennClient, WrennClient
from wrenn._async.capsules import AsyncCapsules
from wrenn._async.events import AsyncEvents
from wrenn._async.snapshots import AsyncSnapshots
from wrenn._sync.capsules import Capsules
from wrenn._sync.events import Events
from wrenn._sync.snapshots import Snapshots

CLIENTS = {
    "async": (AsyncWrennClient, AsyncCapsules, AsyncSnapshots, AsyncEvents),
    "sync": (WrennClient, Capsules, Snapshots, Events),
}


@pytest.mark.parametrize("flavour", sorted(CLIENTS))
def test_resources_are_built_once_per_client_and_stay_assignable(flavour: str) -> None:
    client_class, capsules_class, snapshots_class, events_class = CLIENTS[flavour]
    client = client_class(api_key=API_KEY, base_url=BASE_URL)
    assert "capsules" not in vars(client)  # nothing built yet
    assert type(client.capsules) is capsules_class
    assert type(client.snapshots) is snapshots_class
    assert type(client.events) is events_class
    assert client.capsules is client.capsules and client.capsules._client is client

    copy = client.with_options(max_retries=0)
    assert copy.capsules is not client.capsules and copy.capsules._client is copy
    copy_of_copy = copy.with_options(max_retries=1)
    # one waiter (one event subscription) for a client and all its copies, whichever is first
    assert copy_of_copy._transitions is client._transitions is copy._transitions

    replacement = object()
    client.events = replacement  # type: ignore[assignment]
    assert client.events is replacement
    waiter = client._transitions
    client._init_resources()  # a client initialised again builds everything anew
    assert type(client.events) is events_class and client._transitions is not waiter


def first_reads_at_once(client: WrennClient, threads: int) -> list[object]:
    """What each of ``threads`` threads, started together, reads first."""
    start = threading.Barrier(threads)
    seen: list[object] = []

    def read() -> None:
        start.wait()
        seen.extend([client.capsules, client._transitions])

    workers = [threading.Thread(target=read) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return seen


def test_threads_reading_a_resource_first_at_once_all_get_the_same_one() -> None:
    for _ in range(20):
        with WrennClient(api_key=API_KEY, base_url=BASE_URL) as client:
            seen = first_reads_at_once(client, 8)
            assert {id(x) for x in seen} == {id(client.capsules), id(client._transitions)}


def test_each_resource_module_loads_on_its_first_access() -> None:
    code = (
        "import sys, wrenn\n"
        f"client = wrenn.WrennClient(api_key={API_KEY!r}, base_url={BASE_URL!r})\n"
        "for name, module in [('events', 'events'), ('snapshots', 'snapshots'),\n"
        "                     ('capsules', 'capsules'), ('_transitions', '_transitions')]:\n"
        "    assert 'wrenn._sync.' + module not in sys.modules, module\n"
        "    getattr(client, name)\n"
        "    assert 'wrenn._sync.' + module in sys.modules, module\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "ok"
