"""Attacks from inside a capsule, each one a regression test named after it.

Every attack that consumes resources (fork bombs, memory hogs, output floods)
runs inside the capsule's own cgroup limits, with small numbers and bounded
loops and timeouts, so that it cannot hurt the machine running the tests.  Every
server a test starts is stopped by it, and only processes the tests started are
ever killed (by pid).
"""

from __future__ import annotations

import base64
import errno
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_ws import connect_ws
from wsproto.events import TextMessage

from wrenn._code_runner import proxy_token
from wrenn.local import LocalServer, _fdtree
from wrenn.local._runtime._base import HOST_ENV
from wrenn.local._runtime._bwrap import NOFILE_LIMIT, PTY_MAX

from .conftest import needs_bwrap
from .helpers import error_of, host_pids_with, sh, wait_for

pytestmark = [pytest.mark.local, needs_bwrap]

SECRET_VAR = "WRENN_SECURITY_TEST_SECRET"
SECRET = f"s3cret-{secrets.token_hex(8)}"
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="capsule cgroups need root here")


# ---------------------------------------------------------------------------------
# A dedicated server: it starts with a secret in its environment (as an app that
# embeds LocalServer would have), and its state dir is inspected from the host.
@pytest.fixture(scope="module")
def srv() -> Iterator[LocalServer]:
    old = os.environ.get(SECRET_VAR)
    os.environ[SECRET_VAR] = SECRET
    server = LocalServer(isolation="bwrap", metrics_interval=0.5, ttl_interval=0.5)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if old is None:
            os.environ.pop(SECRET_VAR, None)
        else:
            os.environ[SECRET_VAR] = old


@pytest.fixture(scope="module")
def api(srv: LocalServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=srv.base_url, headers={"X-API-Key": srv.api_key}, timeout=60
    ) as client:
        yield client


@pytest.fixture
def cgroups(api: httpx.Client) -> None:
    """Skip unless the server has capsule cgroups (root with a writable cgroup2 tree)."""
    if not IS_ROOT:
        pytest.skip("capsule cgroups need root here (no cgroup delegation)")
    if api.get("/health").json().get("freeze") != "cgroup":
        pytest.skip("the server could not create capsule cgroups (no writable cgroup2 tree)")


def _status(api: httpx.Client, capsule_id: str) -> str:
    r = api.get(f"/v1/capsules/{capsule_id}")
    if r.status_code == 404:
        return "gone"
    assert r.status_code == 200, r.text
    return str(r.json()["status"])


def _wait_status(api: httpx.Client, capsule_id: str, wanted: set[str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    status = _status(api, capsule_id)
    while status not in wanted and time.monotonic() < deadline:
        time.sleep(0.02)
        status = _status(api, capsule_id)
    assert status in wanted, f"{capsule_id} is {status}, not {wanted}"
    return status


def new_capsule(api: httpx.Client, **body: Any) -> str:
    """Create and wait until running (the lifecycle may answer 201 or 202)."""
    r = api.post("/v1/capsules", json=body)
    assert r.status_code in (201, 202), r.text
    capsule_id: str = r.json()["id"]
    assert _wait_status(api, capsule_id, {"running", "error"}) == "running"
    return capsule_id


def drop_capsule(api: httpx.Client, capsule_id: str) -> None:
    with_transient = {"running", "paused", "stopped", "error", "gone"}
    _wait_status(api, capsule_id, with_transient)
    r = api.delete(f"/v1/capsules/{capsule_id}")
    assert r.status_code in (202, 204, 404), r.text
    _wait_status(api, capsule_id, {"stopped", "gone"})


def take_snapshot(api: httpx.Client, capsule_id: str, name: str) -> None:
    r = api.post("/v1/snapshots", json={"sandbox_id": capsule_id, "name": name})
    assert r.status_code in (201, 202), r.text
    assert wait_for(
        lambda: name in {t["name"] for t in api.get("/v1/snapshots").json()}, timeout=60
    )
    _wait_status(api, capsule_id, {"running", "paused", "stopped", "error"})


@pytest.fixture
def capsule(api: httpx.Client) -> Iterator[str]:
    capsule_id = new_capsule(api)
    try:
        yield capsule_id
    finally:
        drop_capsule(api, capsule_id)


def capsule_dir(srv: LocalServer, capsule_id: str) -> Path:
    return Path(srv.state_dir) / "capsules" / capsule_id


def host_cgroup_of(pid: int) -> dict[str, str]:
    """/proc/<pid>/cgroup as {controllers: path} (``""`` is the v2 hierarchy)."""
    out = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        out[ctrls] = path
    return out


def cgroup_file(pid: int, controller: str, name: str) -> Path:
    """A file of ``pid``'s cgroup in the hierarchy of ``controller`` (v1 or v2)."""
    paths = host_cgroup_of(pid)
    for ctrls, path in paths.items():
        if controller in ctrls.split(","):
            candidate = Path("/sys/fs/cgroup", controller, path.lstrip("/"), name)
            if candidate.exists():
                return candidate
    for root in (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")):
        candidate = root / paths[""].lstrip("/") / name
        if candidate.exists():
            return candidate
    raise AssertionError(f"no {name} for pid {pid}: {paths}")


def background(api: httpx.Client, capsule_id: str, script: str) -> int:
    r = api.post(
        f"/v1/capsules/{capsule_id}/exec",
        json={"cmd": "/bin/sh", "args": ["-c", script], "background": True},
    )
    assert r.status_code == 202, r.text
    return int(r.json()["pid"])


def _find_pid(marker: str, inside: bool) -> int | None:
    for pid in host_pids_with(marker):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if inside and argv[:2] == [b"/bin/sh", b"-c"] and len(argv) == 3:
            return pid  # the command itself (shims carry more arguments)
        if not inside and comm == "nsenter" and ppid == os.getpid():
            return pid  # the host-side wrapper the server spawned
    return None


def host_pid_of(marker: str, *, inside: bool) -> int:
    """The pid of ``/bin/sh -c <script with marker>`` inside the capsule, or of its
    host-side wrapper (nsenter, a child of the server, outside the capsule's pid ns)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        pid = _find_pid(marker, inside)
        if pid is not None:
            return pid
        time.sleep(0.02)
    raise AssertionError(f"no {'capsule' if inside else 'host'} process with {marker}")


def server_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# 1. A clean environment for everything host-side --------------------------------
PRELOAD_SRC = r"""
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
__attribute__((constructor)) static void hit(void) {
    char line[256];
    int fd = open(LOG, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) return;
    snprintf(line, sizeof line, "pid=%d uid=%d\n", (int)getpid(), (int)getuid());
    write(fd, line, strlen(line));
    close(fd);
}
"""


def _build_preload(tmp: Path, log: str) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the LD_PRELOAD object")
    src = tmp / "hit.c"
    src.write_text(PRELOAD_SRC)
    out = tmp / "hit.so"
    subprocess.run(
        [cc, "-shared", "-fPIC", f'-DLOG="{log}"', "-o", str(out), str(src)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return out


def test_envs_ld_preload_does_not_reach_host(
    api: httpx.Client, capsule: str, tmp_path: Path
) -> None:
    # The attack: a .so at a host path, preloaded through the request's envs.  The
    # host path does not exist inside the capsule, so any load is a host-side one.
    host_log = tmp_path / "host-hits.log"
    so = _build_preload(tmp_path, str(host_log))
    envs = {"LD_PRELOAD": str(so), "MARK": "m1"}
    out = sh(api, capsule, "echo $MARK", envs=envs)
    assert out["stdout"] == "m1\n"
    r = api.post(
        f"/v1/capsules/{capsule}/exec",
        json={"cmd": "/bin/true", "envs": envs, "background": True},
    )
    assert r.status_code == 202
    with connect_ws(f"/v1/capsules/{capsule}/pty", api) as ws:
        ws.send_json({"type": "start", "cmd": "/bin/sh", "args": ["-c", "exit 0"], "envs": envs})
        for _ in range(50):
            event = ws.receive(timeout=10)  # output comes as binary frames
            if isinstance(event, TextMessage) and json.loads(event.data)["type"] in (
                "exit",
                "error",
            ):
                break
    time.sleep(0.3)
    assert not host_log.exists(), host_log.read_text()

    # Positive control: the same variable does reach the final command.
    inner_log = "/root/inner-hits.log"
    (tmp_path / "inner").mkdir()
    inner = _build_preload(tmp_path / "inner", inner_log)
    put = api.post(
        f"/v1/capsules/{capsule}/files/write",
        files={"file": ("hit.so", inner.read_bytes())},
        data={"path": "/root/hit.so"},
    )
    assert put.status_code == 204, put.text
    sh(api, capsule, "true", envs={"LD_PRELOAD": "/root/hit.so"})
    hits = sh(api, capsule, f"cat {inner_log}")["stdout"]
    assert "uid=0" in hits  # uid 0 as the capsule sees it


def test_host_side_helpers_get_a_fixed_environment(api: httpx.Client, capsule: str) -> None:
    marker = f"wrenn-envmark-{secrets.token_hex(4)}"
    background(api, capsule, f"sleep 30; : {marker}")
    r = api.post(
        f"/v1/capsules/{capsule}/exec",
        json={
            "cmd": "/bin/sh",
            "args": ["-c", f"sleep 30; : {marker}-2"],
            "envs": {"REQ_VAR": "from-request", "LD_PRELOAD": "/nonexistent.so"},
            "background": True,
        },
    )
    assert r.status_code == 202
    assert wait_for(lambda: len(host_pids_with(f"{marker}-2")) >= 2)
    host = host_pid_of(f"{marker}-2", inside=False)  # the nsenter wrapper
    environ = Path(f"/proc/{host}/environ").read_bytes().split(b"\0")
    # The fixed host environment (the cgroup shim adds PWD=/), nothing else.
    expected = {f"{k}={v}" for k, v in HOST_ENV.items()} | {"PWD=/"}
    assert {e.decode() for e in environ if e} <= expected, environ
    inner = host_pid_of(f"{marker}-2", inside=True)
    inner_env = Path(f"/proc/{inner}/environ").read_bytes()
    assert b"REQ_VAR=from-request" in inner_env
    assert SECRET.encode() not in inner_env


def test_server_environ_not_visible_in_capsule(srv: LocalServer, api: httpx.Client) -> None:
    assert os.environ[SECRET_VAR] == SECRET  # the server process has it
    capsule_id = new_capsule(api)
    try:
        out = sh(api, capsule_id, "cat /proc/1/environ /proc/[0-9]*/environ | tr '\\0' '\\n'")
        assert SECRET not in out["stdout"]
        assert srv.api_key not in out["stdout"]
        assert SECRET_VAR not in sh(api, capsule_id, "env")["stdout"]
    finally:
        drop_capsule(api, capsule_id)


# 2. No nested user namespaces; the capsule's own cgroup and cgroupns ------------
def test_no_nested_userns(srv: LocalServer, api: httpx.Client, capsule: str) -> None:
    if "without --disable-userns" in srv.isolation_reason:
        pytest.skip(f"bubblewrap cannot disable user namespaces here: {srv.isolation_reason}")
    out = sh(
        api,
        capsule,
        "unshare -U true; echo user=$?; unshare -Urm true; echo userm=$?;"
        "unshare -Urmpf --mount-proc true; echo userpid=$?;"
        "unshare -C true; echo cgroup=$?; unshare -m true; echo mount=$?;"
        "mkdir -p /tmp/cg && mount -t cgroup2 none /tmp/cg; echo mountcg=$?;"
        "ls /sys/fs/cgroup >/dev/null 2>&1; echo sysfs=$?",
    )["stdout"]
    for line in out.split():
        assert not line.endswith("=0"), out


@needs_root
def test_exec_runs_in_capsule_cgroup(api: httpx.Client, capsule: str, cgroups: None) -> None:
    # Inside: a cgroup namespace rooted at the capsule's own cgroup.
    inside = sh(api, capsule, "cat /proc/self/cgroup")["stdout"].splitlines()
    assert "0::/" in inside
    assert sh(api, capsule, "readlink /proc/self/ns/cgroup")["stdout"].strip() != os.readlink(
        "/proc/self/ns/cgroup"
    )
    # From the host: foreground, background and the init share one capsule cgroup.
    marker = f"wrenn-cgmark-{secrets.token_hex(4)}"
    background(api, capsule, f"sleep 30; : {marker}")
    assert wait_for(lambda: len(host_pids_with(marker)) >= 2)
    for side in (True, False):
        paths = host_cgroup_of(host_pid_of(marker, inside=side))
        assert paths[""].endswith(f"/{capsule}"), paths
        for ctrl in ("memory", "pids"):
            v1 = [p for c, p in paths.items() if ctrl in c.split(",")]
            if v1 and Path("/sys/fs/cgroup", ctrl).is_dir():
                assert v1[0].endswith(f"/{capsule}"), paths
    own = host_cgroup_of(os.getpid())[""]
    assert own != host_cgroup_of(host_pid_of(marker, inside=True))[""]


def test_capsule_cannot_reach_other_capsules_or_host_cgroups(
    api: httpx.Client, cgroups: None
) -> None:
    a, b = new_capsule(api), new_capsule(api)
    try:
        marker = f"wrenn-victim-{secrets.token_hex(4)}"
        background(api, b, f"sleep 30; : {marker}")
        assert wait_for(lambda: bool(host_pids_with(marker)))
        # The attack: a nested user namespace gives back the capabilities needed to
        # mount the host's cgroup2 tree, then the other capsule's cgroup.kill.  In
        # one process (no exec, which would drop those capabilities again).  Aimed
        # at capsule b's cgroup only, by its id, should it ever succeed.
        attack = (
            "import ctypes, glob, os\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "os.makedirs('/tmp/cg', exist_ok=True)\n"
            "flags = 0x10000000 | 0x00020000 | 0x02000000\n"
            "print('unshare', libc.unshare(flags), ctypes.get_errno())\n"
            "print('mount', libc.mount(b'none', b'/tmp/cg', b'cgroup2', 0, None))\n"
            f"for f in glob.glob('/tmp/cg/**/{b}/cgroup.kill', recursive=True):\n"
            "    try:\n"
            "        open(f, 'w').write('1'); print('wrote', f)\n"
            "    except OSError as e: print('refused', f, e)\n"
            f"for d in glob.glob('/tmp/cg/**/{b}', recursive=True):\n"
            "    try:\n"
            "        os.mkdir(d + '/probe'); os.rmdir(d + '/probe'); print('made', d)\n"
            "    except OSError as e: print('refused', d, e)\n"
        )
        out = api.post(
            f"/v1/capsules/{a}/exec",
            json={"cmd": "/usr/bin/python3", "args": ["-c", attack], "timeout_sec": 30},
        ).json()
        assert "wrote" not in out["stdout"] and "made" not in out["stdout"], out
        time.sleep(0.2)
        assert host_pids_with(marker)  # the other capsule's process is alive
    finally:
        drop_capsule(api, a)
        drop_capsule(api, b)


# 4. Snapshots, disk usage and removal walk by fd --------------------------------
def test_snapshot_symlink_swap_cannot_copy_host_files(tmp_path: Path) -> None:
    # The race of the attack, made frequent: a thread keeps swapping a directory
    # of the tree for a symlink to a directory outside it while the tree is copied.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "host-secret").write_text("host only")
    tree = tmp_path / "tree"
    (tree / "d").mkdir(parents=True)
    for i in range(5):
        (tree / "d" / f"f{i}").write_text("x")
    stop = threading.Event()

    def swapper() -> None:
        # The sleeps let the copy run while the link is in place (and release the
        # GIL): the path-string copy this replaced leaked about 3 % of copies here.
        for _ in range(200_000):
            if stop.is_set():
                return
            try:
                os.rename(tree / "d", tree / "d.real")
                os.symlink(outside, tree / "d")
                time.sleep(0.0003)
                os.unlink(tree / "d")
                os.rename(tree / "d.real", tree / "d")
                time.sleep(0.0003)
            except OSError:
                pass

    t = threading.Thread(target=swapper)
    t.start()
    try:
        for i in range(200):
            dst = tmp_path / f"copy{i}"
            try:
                _fdtree.copy_tree(tree, dst)
            except OSError:
                pass  # a walk that saw its tree move aborts: allowed
            found = [str(p) for p in dst.rglob("*") if p.name == "host-secret"]
            assert not found, found
            # Links are copied as links, never followed.
            link = dst / "d"
            assert not link.exists() or link.is_symlink() or link.is_dir()
            _fdtree.remove_tree(dst)
            assert not dst.exists()
    finally:
        stop.set()
        t.join(10)


def test_snapshot_of_links_to_host_files(srv: LocalServer, api: httpx.Client) -> None:
    capsule_id = new_capsule(api)
    name = f"sec-links-{secrets.token_hex(3)}"
    clone = None
    try:
        sh(api, capsule_id, "ln -s /etc /root/etc-link; ln -s /etc/shadow /root/shadow-link")
        take_snapshot(api, capsule_id, name)
        tpl = Path(srv.state_dir) / "templates" / name / "rw" / "root"
        assert (tpl / "etc-link").is_symlink() and os.readlink(tpl / "etc-link") == "/etc"
        assert not any(p.name == "shadow" for p in tpl.rglob("*") if not p.is_symlink())
        clone = new_capsule(api, template=name)
        assert sh(api, clone, "readlink /root/etc-link")["stdout"] == "/etc\n"
    finally:
        drop_capsule(api, capsule_id)
        if clone:
            drop_capsule(api, clone)
        api.delete(f"/v1/snapshots/{name}")


DEEP = 1200


def _make_deep(api: httpx.Client, capsule_id: str) -> None:
    script = (
        "import os\n"
        "os.chdir('/root')\n"
        f"for i in range({DEEP}):\n"
        "    os.mkdir('d'); os.chdir('d')\n"
        "open('leaf', 'w').write('bottom')\n"
    )
    r = api.post(
        f"/v1/capsules/{capsule_id}/exec",
        json={"cmd": "/usr/bin/python3", "args": ["-c", script], "timeout_sec": 60},
    )
    assert r.status_code == 200 and r.json()["exit_code"] == 0, r.text


def test_deep_tree_destroy_and_snapshot(tmp_path: Path) -> None:
    # A server of its own: its stop() must cope with a live deep capsule too.
    server = LocalServer(isolation="bwrap", state_dir=tmp_path / "state")
    server.start()
    try:
        with httpx.Client(
            base_url=server.base_url, headers={"X-API-Key": server.api_key}, timeout=60
        ) as api:
            deep = new_capsule(api)
            _make_deep(api, deep)
            got = api.get(f"/v1/capsules/{deep}")
            assert got.status_code == 200, got.text
            listed = api.post(
                f"/v1/capsules/{deep}/files/list", json={"path": "/root", "depth": 5000}
            )
            assert listed.status_code == 200, listed.text
            take_snapshot(api, deep, "deep-tree")
            clone = new_capsule(api, template="deep-tree")
            depth = sh(api, clone, "find /root -name leaf | tr -cd / | wc -c")["stdout"]
            assert int(depth) == DEEP + 2
            for capsule_id in (deep, clone):
                drop_capsule(api, capsule_id)
                assert wait_for(lambda c=capsule_id: not capsule_dir(server, c).exists())
            assert api.delete("/v1/snapshots/deep-tree").status_code == 204
            assert not (tmp_path / "state" / "templates" / "deep-tree").exists()
            leftovers = [p.name for p in (tmp_path / "state" / "templates").iterdir()]
            assert leftovers == [], leftovers
            live = new_capsule(api)  # left running for stop()
            _make_deep(api, live)
            removed = api.post(f"/v1/capsules/{live}/files/remove", json={"path": "/root/d"})
            assert removed.status_code == 204, removed.text
            _make_deep(api, live)
    finally:
        server.stop()  # must not raise (it once raised RecursionError)
        # pytest's own tmp_path cleanup is recursive: leave no deep tree behind.
        _fdtree.remove_tree(tmp_path / "state")


def test_fd_tree_handles_depth_without_recursion(tmp_path: Path) -> None:
    root = tmp_path / "t"
    root.mkdir()
    try:
        fd = os.open(root, os.O_RDONLY)
        try:
            for _ in range(3000):  # deeper than the interpreter's recursion limit
                os.mkdir("d", dir_fd=fd)
                nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
                os.close(fd)
                fd = nxt
            with open(os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
                f.write("x" * 5000)
        finally:
            os.close(fd)
        assert _fdtree.disk_usage(root) > 3000 * 512
        _fdtree.copy_tree(root, tmp_path / "c")
        _fdtree.remove_tree(root)
        _fdtree.remove_tree(tmp_path / "c")
        assert not root.exists() and not (tmp_path / "c").exists()
    finally:
        # pytest's own tmp_path cleanup is recursive: leave no deep tree behind.
        _fdtree.remove_tree(root)
        _fdtree.remove_tree(tmp_path / "c")


def test_copy_keeps_sparse_files_sparse(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.seek(256 * 1024 * 1024)
        f.write(b"end")
    _fdtree.copy_tree(src, tmp_path / "dst")
    st = os.stat(tmp_path / "dst" / "sparse")
    assert st.st_size == 256 * 1024 * 1024 + 3
    assert st.st_blocks * 512 < 1024 * 1024
    assert (tmp_path / "dst" / "sparse").read_bytes()[-3:] == b"end"


# 5. The files API ------------------------------------------------------------------
def test_files_read_refuses_proc_kmsg(api: httpx.Client, capsule: str) -> None:
    # Should the refusal ever regress, blocked readers of the kernel log are
    # released by a few log lines, so that the server can still be stopped.
    done = False
    try:
        sh(
            api,
            capsule,
            "ln -s /proc/kmsg /root/k; ln -s ../proc/1/environ /root/e; mkfifo /root/p",
        )
        paths = ["/root/k", "/proc/kmsg", "/root/e", "/sys/kernel/notes", "/dev/zero", "/dev/null"]
        for route in ("files/read", "files/stream/read"):
            for path in paths:
                started = time.monotonic()
                r = api.post(f"/v1/capsules/{capsule}/{route}", json={"path": path}, timeout=10)
                assert time.monotonic() - started < 5
                assert r.status_code in (403, 502), (route, path, r.text)
                if path in ("/root/k", "/proc/kmsg", "/root/e"):
                    assert error_of(r)[:2] == (403, "forbidden"), (route, path, r.text)
            r = api.post(f"/v1/capsules/{capsule}/{route}", json={"path": "/root/p"}, timeout=10)
            assert error_of(r)[0] == 502 and "not a regular file" in error_of(r)[2]
        # More requests than worker threads: none of them blocks, the server still serves.
        results: list[int] = []

        def read() -> None:
            r = httpx.post(
                f"{api.base_url}/v1/capsules/{capsule}/files/read",
                json={"path": "/root/k"},
                headers=dict(api.headers),
                timeout=10,
            )
            results.append(r.status_code)

        threads = [threading.Thread(target=read) for _ in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        assert results == [403] * 40
        other = new_capsule(api)
        drop_capsule(api, other)
        done = True
    finally:
        if not done and IS_ROOT:
            with open("/dev/kmsg", "w") as kmsg:
                for _ in range(64):
                    kmsg.write("wrenn.local security test: releasing kmsg readers\n")
                    kmsg.flush()


def test_files_read_is_bounded(api: httpx.Client, capsule: str) -> None:
    sh(api, capsule, "truncate -s 1G /root/sparse; head -c 1000 /dev/zero > /root/small")
    before = server_rss()
    r = api.post(f"/v1/capsules/{capsule}/files/read", json={"path": "/root/sparse"})
    assert error_of(r)[:2] == (413, "too_large"), r.text
    assert server_rss() - before < 64 * 1024 * 1024
    r = api.post(f"/v1/capsules/{capsule}/files/read", json={"path": "/root/small"})
    assert r.status_code == 200 and r.content == b"\0" * 1000


# 3. Pause freezes every process of the capsule --------------------------------------
@needs_root
def test_pause_freezes_every_process(srv: LocalServer, api: httpx.Client, cgroups: None) -> None:
    assert api.get("/health").json().get("freeze") in (None, "cgroup")
    capsule_id = new_capsule(api)
    try:
        # Detached (setsid, double fork) counters: a pid-namespace signal sweep is
        # not what stops them, the cgroup freezer is.
        background(
            api,
            capsule_id,
            "setsid sh -c 'i=0; while :; do i=$((i+1)); echo $i > /root/count; done' &",
        )
        count = capsule_dir(srv, capsule_id) / "rw" / "root" / "count"

        def value() -> int:
            try:
                return int(count.read_text().strip() or 0)
            except (OSError, ValueError):
                return -1

        assert wait_for(lambda: value() > 0)
        r = api.post(f"/v1/capsules/{capsule_id}/pause")
        assert r.status_code in (200, 202), r.text
        _wait_status(api, capsule_id, {"paused"})
        first = value()
        time.sleep(0.5)
        assert value() == first
        r = api.post(f"/v1/capsules/{capsule_id}/resume")
        assert r.status_code in (200, 202), r.text
        _wait_status(api, capsule_id, {"running"})
        assert wait_for(lambda: value() > first)
    finally:
        drop_capsule(api, capsule_id)


# 6. Limits per capsule ---------------------------------------------------------------
@needs_root
def test_limits_follow_the_request(api: httpx.Client, cgroups: None) -> None:
    capsule_id = new_capsule(api, vcpus=1, memory_mb=160)
    try:
        marker = f"wrenn-limits-{secrets.token_hex(4)}"
        background(api, capsule_id, f"sleep 30; : {marker}")
        assert wait_for(lambda: bool(host_pids_with(marker)))
        pid = host_pid_of(marker, inside=True)
        mem = cgroup_file(pid, "memory", "memory.limit_in_bytes")
        assert int(mem.read_text()) == 160 * 1024 * 1024
        assert int(cgroup_file(pid, "pids", "pids.max").read_text()) > 0
        quota = cgroup_file(pid, "cpu", "cpu.cfs_quota_us")
        assert int(quota.read_text()) == 100_000
    finally:
        drop_capsule(api, capsule_id)


@needs_root
def test_fork_bomb_is_contained(api: httpx.Client, cgroups: None) -> None:
    capsule_id = new_capsule(api)
    try:
        marker = f"wrenn-bomb-{secrets.token_hex(4)}"
        background(api, capsule_id, f"sleep 30; : {marker}")
        assert wait_for(lambda: bool(host_pids_with(marker)))
        pids = cgroup_file(host_pid_of(marker, inside=True), "pids", "pids.current")
        limit = int((pids.parent / "pids.max").read_text())
        host_before = len([p for p in os.listdir("/proc") if p.isdigit()])
        # Bounded: 3000 forks at most (shell builtins only, no `seq`), each child
        # gone after 20 s, inside an exec that times out.
        r = api.post(
            f"/v1/capsules/{capsule_id}/exec",
            json={
                "cmd": "/bin/sh",
                "args": [
                    "-c",
                    "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); sleep 20 2>/dev/null & done",
                ],
                "timeout_sec": 60,
            },
        )
        assert r.status_code in (200, 502), r.text
        assert int(pids.read_text()) <= limit
        host_after = len([p for p in os.listdir("/proc") if p.isdigit()])
        assert host_after - host_before <= limit
        # The server and other capsules still work.
        other = new_capsule(api)
        assert sh(api, other, "echo ok")["stdout"] == "ok\n"
        drop_capsule(api, other)
    finally:
        drop_capsule(api, capsule_id)


@needs_root
def test_memory_limit_enforced(api: httpx.Client, cgroups: None) -> None:
    capsule_id = new_capsule(api, memory_mb=128)
    try:
        # Bounded: 512 MiB at most is ever asked for, in a 128 MiB capsule.
        r = api.post(
            f"/v1/capsules/{capsule_id}/exec",
            json={
                "cmd": "/usr/bin/python3",
                "args": [
                    "-c",
                    "b = []\n"
                    "for i in range(64):\n"
                    "    b.append(b'x' * (8 << 20))\n"
                    "print('allocated', len(b) * 8, 'MiB')",
                ],
                "timeout_sec": 60,
            },
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["exit_code"] != 0, body
        assert "allocated 512" not in body["stdout"]
        assert sh(api, capsule_id, "echo still-here")["stdout"] == "still-here\n"
    finally:
        drop_capsule(api, capsule_id)


@needs_root
def test_cpu_limit_enforced(api: httpx.Client, cgroups: None) -> None:
    capsule_id = new_capsule(api, vcpus=1)
    try:
        script = (
            "import os, time\n"
            "end = time.monotonic() + 1.5\n"
            "pids = []\n"
            "for _ in range(2):\n"
            "    pid = os.fork()\n"
            "    if pid == 0:\n"
            "        while time.monotonic() < end: pass\n"
            "        os._exit(0)\n"
            "    pids.append(pid)\n"
            "for pid in pids: os.waitpid(pid, 0)\n"
            "t = os.times()\n"
            "print(t.children_user + t.children_system)\n"
        )
        r = api.post(
            f"/v1/capsules/{capsule_id}/exec",
            json={"cmd": "/usr/bin/python3", "args": ["-c", script], "timeout_sec": 30},
        )
        assert r.status_code == 200, r.text
        used = float(r.json()["stdout"])
        # Two spinners for 1.5 s would use 3 CPU-seconds on two free cores.
        assert used < 2.2, r.json()
    finally:
        drop_capsule(api, capsule_id)


def test_exec_output_is_bounded(api: httpx.Client, capsule: str) -> None:
    before = server_rss()
    started = time.monotonic()
    r = api.post(
        f"/v1/capsules/{capsule}/exec",
        json={"cmd": "/usr/bin/head", "args": ["-c", "300M", "/dev/zero"], "timeout_sec": 60},
    )
    assert error_of(r)[0] == 502 and "output exceeds" in error_of(r)[2], r.text
    assert time.monotonic() - started < 30
    assert server_rss() - before < 200 * 1024 * 1024
    ok = sh(api, capsule, "head -c 1000 /dev/zero | base64 -w0")
    assert base64.b64decode(ok["stdout"]) == b"\0" * 1000


# Opens terminals until the kernel says no (at most 500 tries), writes how many it
# got and why it stopped to /root/held, then holds them for argv[1] seconds.
PTY_HOG = """
import os, sys, time
held = []
try:
    for _ in range(500):
        held.append(os.openpty())
except OSError as exc:
    stopped = exc.errno
else:
    stopped = 0
with open("/root/held.tmp", "w") as f:
    f.write(f"{len(held)} {stopped}")
os.rename("/root/held.tmp", "/root/held")
time.sleep(int(sys.argv[1]))
"""


def test_terminal_hog_gets_only_its_own_terminals(api: httpx.Client) -> None:
    # A capsule that opens ptys in a loop must run out of its own, not drain the
    # kernel's pool that every other capsule (and the host's containers) share.
    hog = new_capsule(api)
    try:
        put = api.post(
            f"/v1/capsules/{hog}/files/write",
            files={"file": ("hog.py", PTY_HOG.encode())},
            data={"path": "/root/hog.py"},
        )
        assert put.status_code == 204, put.text
        background(api, hog, "python3 /root/hog.py 60")
        # Waited for inside the capsule (bounded): capsules yield the CPU to the
        # host, so on a busy machine the hog may take a while to get going.
        sh(
            api,
            hog,
            "i=0; while [ ! -e /root/held ] && [ $i -lt 1200 ]; do i=$((i+1)); sleep 0.05; done",
        )
        out = sh(api, hog, "cat /root/held")["stdout"].split()
        assert out == [str(PTY_MAX), str(errno.ENOSPC)], out
        # While the hog holds all of them, the API cannot start a terminal in that
        # capsule either (and never falls back to a host pty)...
        assert _pty_start(api, hog) == "error"
        # ...while another capsule still gets one.
        other = new_capsule(api)
        try:
            assert _pty_start(api, other) == "started"
        finally:
            drop_capsule(api, other)
    finally:
        drop_capsule(api, hog)


def _pty_start(api: httpx.Client, capsule_id: str) -> str:
    """``started`` or ``error``: the first answer to a PTY start frame."""
    with connect_ws(f"/v1/capsules/{capsule_id}/pty", api) as ws:
        ws.send_json({"type": "start", "cmd": "/bin/sh", "args": ["-c", "exit 0"]})
        for _ in range(50):
            event = ws.receive(timeout=10)
            if isinstance(event, TextMessage):
                kind = json.loads(event.data)["type"]
                if kind in ("started", "error"):
                    return str(kind)
    raise AssertionError("no started or error frame")


def test_commands_cannot_raise_their_open_file_or_core_limits(
    api: httpx.Client, capsule: str
) -> None:
    soft, hard = NOFILE_LIMIT
    out = sh(api, capsule, "ulimit -Sn; ulimit -Hn; ulimit -c")["stdout"].split()
    assert out == [str(soft), str(hard), "0"]
    # Raising the hard limit needs CAP_SYS_RESOURCE, which no command has.
    raised = sh(api, capsule, f"ulimit -Hn {hard * 2} 2>/dev/null && echo raised || echo refused")
    assert raised["stdout"] == "refused\n"
    # A background command (pid shim) gets the same bound.
    marker = f"wrenn-nofile-{secrets.token_hex(4)}"
    background(api, capsule, f"sleep 30; : {marker}")
    assert wait_for(lambda: bool(host_pids_with(marker)))
    pid = host_pid_of(marker, inside=True)
    limits = Path(f"/proc/{pid}/limits").read_text()
    line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
    assert line.split()[3:5] == [str(soft), str(hard)], line


def test_exec_stream_slow_reader_is_backpressured(api: httpx.Client, capsule: str) -> None:
    before = server_rss()
    with connect_ws(f"/v1/capsules/{capsule}/exec/stream", api) as ws:
        # At most 512 MiB, and the reader never reads more than a few frames.
        ws.send_json(
            {
                "type": "start",
                "cmd": "/bin/sh",
                "args": ["-c", "head -c 512M /dev/zero | tr '\\0' a"],
            }
        )
        assert ws.receive_json(timeout=10)["type"] == "start"
        time.sleep(3)  # a slow reader: the producer is held, not buffered
        assert server_rss() - before < 128 * 1024 * 1024
        frame = ws.receive_json(timeout=10)
        assert frame["type"] == "stdout"
        ws.send_json({"type": "stop"})
        # Drain to the exit frame (bounded): the client's own receive queue is full,
        # and closing with a full queue would block its reader thread.
        for _ in range(20_000):
            if ws.receive_json(timeout=10)["type"] in ("exit", "error"):
                break
    sh(api, capsule, "true")


def test_every_launch_shape_keeps_envs_inside(tmp_path: Path) -> None:
    # Foreground, background/stream (pid shim), PTY (tty) and kernel launches all
    # build their argv here: request variables only after `env -i --`, inside.
    from wrenn.local._runtime._bwrap import BwrapSandbox

    sandbox = BwrapSandbox("cl-x", tmp_path, None)
    sandbox._root_fd = os.open("/", os.O_PATH)
    sandbox._ns_fds = {
        n: os.open("/", os.O_PATH) for n in ("user", "mnt", "uts", "ipc", "net", "pid", "cgroup")
    }
    try:
        env = {"LD_PRELOAD": "/x.so", "PATH": "/usr/bin", "K": "v=w", "BAD=KEY": "x", "": "y"}
        for tty in (False, True):
            for want_pid in (False, True):
                launch = sandbox.launch(["cmd", "arg"], env, "/root", tty=tty, want_pid=want_pid)
                assert launch.env == HOST_ENV
                cut = launch.argv.index("-i")
                assert launch.argv[cut - 1].endswith("/env") and launch.argv[cut + 1] == "--"
                before = launch.argv[:cut]
                assert not any("LD_PRELOAD" in a or "v=w" in a for a in before)
                assert "LD_PRELOAD=/x.so" in launch.argv and "K=v=w" in launch.argv
                assert "BAD=KEY=x" not in launch.argv and "=y" not in launch.argv
                assert launch.argv[-2:] == ["cmd", "arg"]
                assert any(a.startswith("--cgroup=") for a in before)
    finally:
        for fd in [sandbox._root_fd, *sandbox._ns_fds.values()]:
            os.close(fd)


def test_kernel_environment_is_clean(srv: LocalServer, api: httpx.Client) -> None:
    from wrenn.local import _kernels

    if _kernels.missing_packages():
        pytest.skip(_kernels.install_hint())
    capsule_id = new_capsule(api, template="code-runner-beta")
    try:
        with httpx.Client(
            base_url=srv.base_url,
            headers={
                "Host": f"8888-{capsule_id}.127.0.0.1:{srv.port}",
                "X-Wrenn-Proxy-Token": proxy_token(srv.api_key, capsule_id),
            },
            timeout=60,
        ) as jupyter:
            assert jupyter.post("/api/kernels", json={"name": "wrenn"}).status_code == 201
        out = sh(
            api,
            capsule_id,
            "for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ; done 2>/dev/null",
        )["stdout"]
        assert SECRET not in out and srv.api_key not in out
        assert "JPY_PARENT_PID" not in out
    finally:
        drop_capsule(api, capsule_id)
