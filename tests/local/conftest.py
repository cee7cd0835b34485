"""Fixtures for the wrenn.local end-to-end tests.

One server per session (capsule creation is cheap, server start is not); every
test that creates a capsule destroys it, and the server is always stopped.
"""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from wrenn.local import LocalServer
from wrenn.local._vm import guest_agent
from wrenn.local._vm._agent import AgentChannel
from wrenn.local._vm._guest_files import GuestFiles

from .helpers import create, destroy


def _bwrap_usable() -> bool:
    if shutil.which("bwrap") is None:
        return False
    from wrenn.local._runtime._probe import probe_bwrap

    return probe_bwrap() is None


# Tests that rely on the capsule's own /root, /tmp, pid namespace or isolation.
# Without bubblewrap the server falls back to plain subprocesses, where those
# paths are the host's: such tests must not run there.
needs_bwrap = pytest.mark.skipif(not _bwrap_usable(), reason="bubblewrap is missing or unusable")


@pytest.fixture(scope="session")
def server() -> Iterator[LocalServer]:
    srv = LocalServer(
        sse_keepalive=0.3,
        pty_ping_interval=1.0,
        metrics_interval=0.3,
        ttl_interval=0.2,
        min_timeout_sec=2,
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def http(server: LocalServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.base_url, headers={"X-API-Key": server.api_key}, timeout=30
    ) as client:
        yield client


@pytest.fixture
def capsule(http: httpx.Client) -> Iterator[str]:
    capsule_id = create(http)
    try:
        yield capsule_id
    finally:
        destroy(http, capsule_id)


@pytest.fixture
def files() -> Iterator[GuestFiles]:
    """GuestFiles against the real guest agent, run on this host over a socketpair
    (its "guest filesystem" is this host's: tests use paths in a temp dir)."""
    host, guest = socket.socketpair()
    agent = guest_agent.Agent(guest.fileno())
    thread = threading.Thread(target=agent.serve, kwargs={"return_on_eof": True}, daemon=True)
    thread.start()
    channel = AgentChannel(host)
    try:
        yield GuestFiles(channel)
    finally:
        host.shutdown(socket.SHUT_WR)
        thread.join(timeout=10.0)
        channel.close()
        guest.close()
