"""What a process inside a bubblewrap capsule can and cannot see or change."""

from __future__ import annotations

import os
import secrets

import httpx
import pytest

from .conftest import needs_bwrap
from .helpers import create, destroy, sh

pytestmark = [pytest.mark.local, needs_bwrap]


def test_capsule_cannot_see_host_processes(http: httpx.Client, capsule: str) -> None:
    out = sh(http, capsule, "ls /proc | grep -c '^[0-9]'; cat /proc/1/cmdline | tr '\\0' ' '")[
        "stdout"
    ]
    count, init = out.splitlines()
    assert int(count) < 10  # the capsule's own init, its sleep and this shell
    assert init.startswith("/bin/sh -c echo ready")  # the capsule init
    assert str(os.getpid()) not in sh(http, capsule, "ls /proc")["stdout"].split()


def test_tmp_is_private(http: httpx.Client, capsule: str) -> None:
    name = f"wrenn-private-{secrets.token_hex(4)}"
    sh(http, capsule, f"echo inside > /tmp/{name}")
    assert not os.path.exists(f"/tmp/{name}")
    other = create(http)
    try:
        assert (
            sh(http, other, f"test -e /tmp/{name} && echo seen || echo absent")["stdout"]
            == "absent\n"
        )
    finally:
        destroy(http, other)


def test_host_dirs_are_read_only_and_capabilities_dropped(http: httpx.Client, capsule: str) -> None:
    out = sh(
        http,
        capsule,
        "grep CapEff /proc/self/status; touch /usr/x 2>&1; echo x >> /etc/passwd 2>&1;"
        " mount -o remount,rw /etc 2>&1; echo rc=$?",
    )
    assert "CapEff:\t0000000000000000" in out["stdout"]
    assert "Read-only file system" in out["stdout"]
    assert "rc=0" not in out["stdout"]
    assert not os.path.exists("/usr/x")


def test_network_is_loopback_only(http: httpx.Client, capsule: str) -> None:
    ifaces = sh(http, capsule, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '")[
        "stdout"
    ].split()
    assert ifaces == ["lo"]


def test_shadow_is_masked(http: httpx.Client, capsule: str) -> None:
    assert sh(http, capsule, "cat /etc/shadow 2>/dev/null | wc -c")["stdout"].strip() == "0"


def test_capsule_survives_kill_of_everything_inside(http: httpx.Client, capsule: str) -> None:
    # pid 1 of the capsule cannot be killed from inside, so the capsule lives on.
    sh(http, capsule, "kill -9 -1; kill -9 1; pkill sleep; true")
    assert sh(http, capsule, "echo alive")["stdout"] == "alive\n"
    assert sh(http, capsule, "cat /proc/1/status | grep -c '^State:.*[SR]'")["stdout"] == "1\n"
