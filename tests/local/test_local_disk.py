"""Each capsule's writable dirs on a disk of its own (an ext4 image on a loop device).

The fills here are small (a 32 MiB disk) and bounded; every server and process a
test starts is stopped by it, and a server killed on purpose is a subprocess the
test started, killed by its pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from wrenn.local import LocalServer
from wrenn.local._runtime._disk import IMAGE_NAME, mount_points, why_unavailable

from .conftest import needs_bwrap
from .helpers import create, destroy, sh, wait_for

pytestmark = [
    pytest.mark.local,
    needs_bwrap,
    pytest.mark.skipif(why_unavailable() is not None, reason=str(why_unavailable())),
]

DISK_MB = 32


def _mounts_under(path: Path) -> list[str]:
    return [m for m in mount_points() if m.startswith(f"{path}/")]


def _client(server: LocalServer) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers={"X-API-Key": server.api_key}, timeout=60)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    server = LocalServer(
        state_dir=tmp_path_factory.mktemp("disk-state"), isolation="bwrap", disk_size_mb=DISK_MB
    )
    server.start()
    state = server.state_dir
    try:
        yield server
    finally:
        server.stop()
    assert _mounts_under(state) == []


@pytest.fixture(scope="module")
def api(srv: LocalServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=srv.base_url, headers={"X-API-Key": srv.api_key}, timeout=60
    ) as client:
        yield client


@pytest.fixture
def capsule(api: httpx.Client) -> Iterator[str]:
    capsule_id = create(api, template="minimal")
    try:
        yield capsule_id
    finally:
        destroy(api, capsule_id)


def test_health_says_capsules_have_disks_of_their_own(api: httpx.Client) -> None:
    assert api.get("/health").json()["disk_quota"] is True


def test_disk_fill_stops_at_the_capsules_own_disk(
    srv: LocalServer, api: httpx.Client, capsule: str
) -> None:
    # 64 MiB of zeros into a 32 MiB disk, spread over every writable dir.
    out = sh(
        api,
        capsule,
        "for d in /root /tmp /workspace /home; do"
        " dd if=/dev/zero of=$d/fill bs=1M count=16 2>&1; done; df -k /root",
    )
    assert "No space left on device" in out["stdout"], out
    image = srv.state_dir / "capsules" / capsule / IMAGE_NAME
    # What the host gave the capsule is its image, and the image is the disk's size.
    assert image.stat().st_size == DISK_MB * 1024 * 1024
    assert image.stat().st_blocks * 512 <= (DISK_MB + 1) * 1024 * 1024
    shown = api.get(f"/v1/capsules/{capsule}").json()
    assert shown["disk_size_mb"] == DISK_MB and shown["disk_used_mb"] >= DISK_MB // 2


def test_a_full_disk_is_a_clear_error_through_the_files_api(
    api: httpx.Client, capsule: str
) -> None:
    sh(api, capsule, "dd if=/dev/zero of=/root/fill bs=1M count=64 2>/dev/null; true")
    r = api.post(
        f"/v1/capsules/{capsule}/files/write",
        files={"file": ("x", b"y" * (4 * 1024 * 1024))},
        data={"path": "/root/more"},
    )
    assert r.status_code != 500 and r.status_code >= 400, r.text
    assert r.status_code == 502 and "no space left" in r.json()["error"]["message"].lower(), r.text
    # Freeing space makes the disk usable again; nothing half-written was left.
    sh(api, capsule, "rm -f /root/fill")
    assert sh(api, capsule, "ls /root")["stdout"] == ""
    assert sh(api, capsule, "echo ok > /root/ok && cat /root/ok")["stdout"] == "ok\n"


def test_one_capsules_full_disk_leaves_the_others_theirs(api: httpx.Client) -> None:
    first = create(api, template="minimal")
    second = create(api, template="minimal")
    try:
        sh(api, first, "dd if=/dev/zero of=/root/fill bs=1M count=64 2>/dev/null; true")
        out = sh(api, second, "dd if=/dev/zero of=/root/f bs=1M count=8 2>&1 && echo wrote")
        assert "wrote" in out["stdout"], out
    finally:
        destroy(api, first)
        destroy(api, second)


def test_files_survive_a_restart_on_the_capsules_disk(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with LocalServer(state_dir=state, isolation="bwrap", disk_size_mb=DISK_MB) as server:
        api = _client(server)
        capsule_id = create(api, template="minimal")
        sh(api, capsule_id, "echo kept > /workspace/note")
        api.close()
    assert _mounts_under(state) == []
    with LocalServer(state_dir=state, isolation="bwrap", disk_size_mb=DISK_MB) as server:
        api = _client(server)
        try:
            assert wait_for(
                lambda: api.get(f"/v1/capsules/{capsule_id}").json()["status"] == "running", 30
            )
            out = sh(api, capsule_id, "cat /workspace/note")
            assert out["stdout"] == "kept\n"
            destroy(api, capsule_id)
        finally:
            api.close()
    assert _mounts_under(state) == []


def test_a_snapshot_of_a_capsule_disk_boots_with_its_files(api: httpx.Client) -> None:
    from .helpers import snapshot

    source = create(api, template="minimal")
    try:
        sh(api, source, "echo from-source > /root/f")
        name = snapshot(api, source)
    finally:
        destroy(api, source)
    clone = create(api, template=name)
    try:
        assert sh(api, clone, "cat /root/f; ls -a /root")["stdout"] == "from-source\n.\n..\nf\n"
    finally:
        destroy(api, clone)
        api.delete(f"/v1/snapshots/{name}")


_KILLED_SERVER = textwrap.dedent(
    """
    import sys, httpx
    from wrenn.local import LocalServer
    server = LocalServer(state_dir=sys.argv[1], isolation="bwrap", disk_size_mb=16)
    server.start()
    api = httpx.Client(base_url=server.base_url, headers={"X-API-Key": server.api_key}, timeout=60)
    r = api.post("/v1/capsules", json={"template": "minimal"})
    cid = r.json()["id"]
    for _ in range(1500):
        if api.get(f"/v1/capsules/{cid}").json()["status"] == "running":
            break
        import time; time.sleep(0.02)
    print(cid, flush=True)
    sys.stdin.read()
    """
)


def test_a_killed_servers_disks_are_detached_at_the_next_start(tmp_path: Path) -> None:
    state = tmp_path / "killed"
    with subprocess.Popen(
        [sys.executable, "-c", _KILLED_SERVER, str(state)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as proc:
        try:
            assert proc.stdout is not None
            capsule_id = proc.stdout.readline().decode().strip()
            assert capsule_id, "the subprocess server did not create its capsule"
            assert _mounts_under(state) == [f"{state}/capsules/{capsule_id}/rw"]
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    # Another server, with another state dir, starting is enough.
    with LocalServer(isolation="bwrap", disk_size_mb=DISK_MB):
        assert _mounts_under(state) == []
    # Nothing holds the killed server's files any more.
    image = state / "capsules" / capsule_id / IMAGE_NAME
    assert image.exists()
    subprocess.run(["rm", "-rf", str(state)], check=True, timeout=30)
    assert not state.exists()
