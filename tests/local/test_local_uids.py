"""As root, a capsule's root is a host uid of its own, never host root.

A process that got out of its capsule's mount namespace would act as that uid:
it owns only its own capsule's files. These tests look from the host at the
owners of files and processes a capsule made.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from wrenn.local import LocalServer
from wrenn.local._runtime._ids import BASE, SPAN

from .conftest import needs_bwrap
from .helpers import create, destroy, sh, snapshot

pytestmark = [
    pytest.mark.local,
    needs_bwrap,
    pytest.mark.skipif(os.geteuid() != 0, reason="only a root server maps capsule root"),
]


@pytest.fixture(scope="module")
def srv() -> Iterator[LocalServer]:
    with LocalServer(isolation="bwrap") as server:
        yield server


@pytest.fixture(scope="module")
def api(srv: LocalServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=srv.base_url, headers={"X-API-Key": srv.api_key}, timeout=60
    ) as client:
        yield client


def _rw(srv: LocalServer, capsule_id: str) -> Path:
    return srv.state_dir / "capsules" / capsule_id / "rw"


def _host_uid_of_root(api: httpx.Client, capsule_id: str) -> int:
    line = sh(api, capsule_id, "cat /proc/self/uid_map")["stdout"].split()
    assert line[0] == "0" and line[2] == "1", line  # only uid 0, mapped to one host uid
    return int(line[1])


def test_capsule_root_is_a_host_uid_of_its_own(srv: LocalServer, api: httpx.Client) -> None:
    first = create(api, template="minimal")
    second = create(api, template="minimal")
    try:
        uids = [_host_uid_of_root(api, c) for c in (first, second)]
        assert all(BASE <= uid < BASE + SPAN for uid in uids), uids
        assert uids[0] != uids[1]
        assert sh(api, first, "id -u; touch /root/inside")["stdout"] == "0\n"
        made = _rw(srv, first) / "root" / "inside"
        assert (made.stat().st_uid, made.stat().st_gid) == (uids[0], uids[0])
        # Every process of the capsule runs as that uid on the host, execs included.
        pid = sh(api, first, "sleep 30 & echo $!")["stdout"].strip()
        host_pids = [
            p
            for p in os.listdir("/proc")
            if p.isdigit() and _uid_of(p) == uids[0] and _cmd(p).startswith("sleep")
        ]
        assert host_pids, pid
    finally:
        destroy(api, first)
        destroy(api, second)


def _uid_of(pid: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[2])  # effective
    except OSError:
        return None
    return None


def _cmd(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_files_the_api_writes_belong_to_the_capsules_root(
    srv: LocalServer, api: httpx.Client
) -> None:
    capsule_id = create(api, template="minimal")
    try:
        uid = _host_uid_of_root(api, capsule_id)
        r = api.post(
            f"/v1/capsules/{capsule_id}/files/write",
            files={"file": ("f", b"from the api")},
            data={"path": "/workspace/new/deep/f.txt"},
        )
        assert r.status_code in (200, 204), r.text
        for path in ("new", "new/deep", "new/deep/f.txt"):
            assert (_rw(srv, capsule_id) / "workspace" / path).stat().st_uid == uid, path
        # The capsule can change what the API wrote, and the API shows it as root's.
        out = sh(
            api,
            capsule_id,
            "echo more >> /workspace/new/deep/f.txt && cat /workspace/new/deep/f.txt",
        )
        assert out["stdout"] == "from the apimore\n", out
        r = api.post(f"/v1/capsules/{capsule_id}/files/mkdir", json={"path": "/root/made"})
        assert r.status_code in (200, 201), r.text
        assert (_rw(srv, capsule_id) / "root" / "made").stat().st_uid == uid
        listing = api.post(
            f"/v1/capsules/{capsule_id}/files/list", json={"path": "/workspace/new/deep"}
        ).json()
        assert [(e["name"], e["owner"], e["group"]) for e in listing["entries"]] == [
            ("f.txt", "root", "root")
        ]
    finally:
        destroy(api, capsule_id)


def test_a_snapshot_moves_files_from_one_capsule_uid_to_the_next(
    srv: LocalServer, api: httpx.Client
) -> None:
    source = create(api, template="minimal")
    try:
        sh(api, source, "mkdir -p /root/d && echo one > /root/d/f && ln -s d/f /root/link")
        name = snapshot(api, source)
    finally:
        destroy(api, source)
    template = srv.state_dir / "templates" / name / "rw" / "root"
    assert {p.lstat().st_uid for p in template.rglob("*")} == {0}  # the server's, in between
    clone = create(api, template=name)
    try:
        uid = _host_uid_of_root(api, clone)
        rw = _rw(srv, clone) / "root"
        assert {p.lstat().st_uid for p in [rw, *rw.rglob("*")]} == {uid}
        assert sh(api, clone, "echo two >> /root/d/f && cat /root/link")["stdout"] == "one\ntwo\n"
    finally:
        destroy(api, clone)
        api.delete(f"/v1/snapshots/{name}")


def test_the_state_dir_lets_capsule_uids_through_and_nothing_else(srv: LocalServer) -> None:
    state = srv.state_dir

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    # Others may pass through (search), never list or read.
    assert mode(state) & 0o007 == 0o001
    assert mode(state / "capsules") == 0o711
    assert mode(state / "templates") == 0o700
    for name in ("wrenn-local.db", "wrenn-local.db-wal", "wrenn-local.db-shm", "disks.lock"):
        if (state / name).exists():
            assert mode(state / name) == 0o600, name
