"""The capsule's own devpts: bounded to PTY_MAX terminals at boot, in-process (fspick) as root.

Every server a test starts is stopped by its context manager, and every capsule
it creates is destroyed (or failed to boot, and then nothing of it runs).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from wrenn.local import LocalServer
from wrenn.local._runtime import _fsconfig
from wrenn.local._runtime._bwrap import PTY_MAX

from .conftest import needs_bwrap
from .helpers import create, destroy, sh, wait_status

pytestmark = [
    pytest.mark.local,
    needs_bwrap,
    pytest.mark.skipif(os.geteuid() != 0, reason="the in-process remount is the root path"),
]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalServer]:
    with LocalServer(state_dir=tmp_path / "state", isolation="bwrap") as srv:
        yield srv


@pytest.fixture
def api(server: LocalServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.base_url, headers={"X-API-Key": server.api_key}, timeout=60
    ) as client:
        yield client


def _devpts(server: LocalServer, capsule_id: str) -> tuple[set[str], set[str]]:
    """(mount flags, filesystem options) of the capsule's /dev/pts, seen from its init."""
    assert server._manager is not None
    init = server._manager.live[capsule_id].sandbox.init_pid  # type: ignore[attr-defined]
    with open(f"/proc/{init}/mountinfo") as f:
        for line in f:
            head, _, tail = line.partition(" - ")
            if head.split()[4] == "/dev/pts":
                return set(head.split()[5].split(",")), set(tail.split()[2].split(","))
    raise AssertionError("the capsule has no /dev/pts")


def test_devpts_is_bounded_and_keeps_bubblewraps_mount_flags(
    server: LocalServer, api: httpx.Client
) -> None:
    capsule_id = create(api, template="minimal")
    try:
        flags, options = _devpts(server, capsule_id)
        assert {f"max={PTY_MAX}", "ptmxmode=666", "mode=620"} <= options
        # A mount(2) remount would have reset these; fsconfig leaves them alone.
        assert {"nosuid", "noexec"} <= flags
        assert sh(api, capsule_id, "echo hi")["stdout"] == "hi\n"
    finally:
        destroy(api, capsule_id)


def test_without_fspick_the_bound_comes_from_a_classic_remount(
    server: LocalServer, api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(dir_fd: int, path: str, options: dict[str, str]) -> None:
        raise _fsconfig.Unavailable("fspick: Function not implemented")

    monkeypatch.setattr(_fsconfig, "reconfigure", unavailable)
    capsule_id = create(api, template="minimal")
    try:
        assert f"max={PTY_MAX}" in _devpts(server, capsule_id)[1]
    finally:
        destroy(api, capsule_id)


def test_a_failed_bound_fails_the_boot(
    server: LocalServer, api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(dir_fd: int, path: str, options: dict[str, str]) -> None:
        raise OSError(errno.EINVAL, f"fsconfig {path}: injected")

    monkeypatch.setattr(_fsconfig, "reconfigure", refused)
    r = api.post("/v1/capsules", json={"template": "minimal"})
    assert r.status_code == 202, r.text
    capsule_id = r.json()["id"]
    assert wait_status(api, capsule_id)["status"] == "error"
    assert server._manager is not None
    assert capsule_id not in server._manager.live
    api.delete(f"/v1/capsules/{capsule_id}")
