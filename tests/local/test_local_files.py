"""Files API: shapes, errors, streaming, and that no path can reach a host file."""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
from collections.abc import Iterator

import httpx
import pytest

from wrenn.local import LocalServer

from .conftest import needs_bwrap
from .helpers import error_of, sh

pytestmark = pytest.mark.local


def write(http: httpx.Client, capsule: str, path: str, data: bytes) -> httpx.Response:
    return http.post(
        f"/v1/capsules/{capsule}/files/write", data={"path": path}, files={"file": ("f", data)}
    )


def read(http: httpx.Client, capsule: str, path: str) -> httpx.Response:
    return http.post(f"/v1/capsules/{capsule}/files/read", json={"path": path})


def test_write_read_roundtrip_relative_and_nested(http: httpx.Client, capsule: str) -> None:
    assert write(http, capsule, "/workspace/a/b/c.bin", b"\x00\xffdata").status_code == 204
    r = read(http, capsule, "/workspace/a/b/c.bin")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.content == b"\x00\xffdata"
    assert write(http, capsule, "notes.txt", b"hi").status_code == 204  # relative to /root
    assert sh(http, capsule, "cat $HOME/notes.txt")["stdout"] == "hi"
    assert write(http, capsule, "notes.txt", b"replaced").status_code == 204
    assert read(http, capsule, "/root/notes.txt").content == b"replaced"


@needs_bwrap
def test_list_shape_depth_and_symlinks(http: httpx.Client, capsule: str) -> None:
    sh(
        http,
        capsule,
        "mkdir -p /root/d/sub && printf 12345 > /root/d/f && chmod 755 /root/d/f"
        " && touch /root/d/sub/deep && ln -s /root/d/f /root/d/link && ln -s /nowhere /root/d/broken",
    )
    r = http.post(f"/v1/capsules/{capsule}/files/list", json={"path": "/root/d"})
    entries = {e["name"]: e for e in r.json()["entries"]}
    assert set(entries) == {"f", "sub", "link", "broken"}
    f = entries["f"]
    assert list(f) == [
        "name",
        "path",
        "type",
        "size",
        "mode",
        "permissions",
        "owner",
        "group",
        "modified_at",
    ]
    assert (f["path"], f["type"], f["size"], f["mode"], f["permissions"]) == (
        "/root/d/f",
        "file",
        5,
        0o755,
        "-rwxr-xr-x",
    )
    assert isinstance(f["modified_at"], int) and f["modified_at"] > 1_600_000_000
    assert entries["sub"]["type"] == "directory" and entries["sub"]["permissions"].startswith("d")
    assert entries["link"]["symlink_target"] == "/root/d/f" and entries["link"]["type"] == "file"
    assert entries["broken"]["type"] == "symlink" and entries["broken"]["permissions"].startswith(
        "L"
    )
    deep = http.post(
        f"/v1/capsules/{capsule}/files/list", json={"path": "/root/d", "depth": 2}
    ).json()["entries"]
    assert "/root/d/sub/deep" in [e["path"] for e in deep]
    shallow = http.post(
        f"/v1/capsules/{capsule}/files/list", json={"path": "/root/d", "depth": 0}
    ).json()
    assert len(shallow["entries"]) == 4


def test_mkdir_conflict_remove_and_missing_paths(http: httpx.Client, capsule: str) -> None:
    base = f"/v1/capsules/{capsule}/files"
    r = http.post(base + "/mkdir", json={"path": "/root/new/dir"})
    assert r.status_code == 200
    assert r.json()["entry"]["path"] == "/root/new/dir" and r.json()["entry"]["type"] == "directory"
    code, kind, message = error_of(http.post(base + "/mkdir", json={"path": "/root/new/dir"}))
    assert (code, kind) == (409, "already_exists") and "already exists" in message
    write(http, capsule, "/root/new/dir/x", b"x")
    assert http.post(base + "/remove", json={"path": "/root/new"}).status_code == 204
    assert sh(http, capsule, "test -e $HOME/new && echo yes || echo no")["stdout"] == "no\n"
    for endpoint in ("/read", "/list", "/remove", "/stream/read"):
        r = http.post(base + endpoint, json={"path": "/root/does-not-exist"})
        assert error_of(r)[:2] == (502, "agent_error"), endpoint
    assert error_of(http.post(base + "/read", json={}))[:2] == (400, "invalid_request")
    assert error_of(http.post(base + "/write", json={"path": "/x"}))[:2] == (400, "invalid_request")


def test_stream_write_and_read(http: httpx.Client, capsule: str) -> None:
    payload = secrets.token_bytes(3 * 1024 * 1024 + 17)
    boundary = secrets.token_hex(16)

    def body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="path"\r\n\r\n/root/big.bin\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="upload.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        for i in range(0, len(payload), 256 * 1024):
            yield payload[i : i + 256 * 1024]
        yield f"\r\n--{boundary}--\r\n".encode()

    r = http.post(
        f"/v1/capsules/{capsule}/files/stream/write",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 204, r.text
    with http.stream(
        "POST", f"/v1/capsules/{capsule}/files/stream/read", json={"path": "/root/big.bin"}
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers.get("transfer-encoding") == "chunked"
        got = b"".join(resp.iter_bytes())
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()


def test_write_over_100_mib_is_413(server: LocalServer, http: httpx.Client, capsule: str) -> None:
    # Declared size over the limit: refused before the body is read.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(
            f"POST /v1/capsules/{capsule}/files/write HTTP/1.1\r\nHost: x\r\nX-API-Key: {server.api_key}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 104857601\r\n\r\n".encode()
        )
        raw = b""
        for _ in range(50):  # headers and body may arrive in separate segments
            chunk = s.recv(65536)
            raw += chunk
            if not chunk or raw.endswith(b"}\n"):
                break
        head = raw.decode()
    assert head.startswith("HTTP/1.1 413")
    assert '{"error":{"code":"too_large","message":"file exceeds 100 MB limit"}}' in head


def test_streamed_body_over_100_mib_is_413(http: httpx.Client, capsule: str) -> None:
    # No Content-Length (chunked): the limit is enforced while the body is read.
    boundary = "wrennboundary"
    chunk = b"\0" * (1 << 20)

    def body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="path"\r\n\r\n/root/big\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\n'
        ).encode()
        for _ in range(101):
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    r = http.post(
        f"/v1/capsules/{capsule}/files/write",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert error_of(r) == (413, "too_large", "file exceeds 100 MB limit")
    assert sh(http, capsule, "test -e $HOME/big && echo yes || echo no")["stdout"] == "no\n"


def _host_snapshot(paths: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for p in paths:
        try:
            with open(p, "rb") as f:
                out[p] = hashlib.sha256(f.read()).hexdigest()
        except OSError:
            out[p] = None
    return out


@needs_bwrap
def test_files_api_cannot_touch_host_files(http: httpx.Client, capsule: str) -> None:
    marker = "wrenn-escape-" + secrets.token_hex(4)
    watched = [
        "/etc/passwd",
        "/etc/hostname",
        f"/etc/{marker}",
        f"/tmp/{marker}",
        f"/root/{marker}",
        f"/{marker}",
    ]
    before = _host_snapshot(watched)
    sh(
        http,
        capsule,
        "ln -s /etc/passwd /root/evil && ln -s / /root/rootlink && ln -s ../../../../etc /root/up",
    )
    attempts = [
        f"../../etc/{marker}",
        "/etc/passwd",
        "../../../../../../etc/passwd",
        f"//root/../../{marker}",
        f"/root/../../../tmp/{marker}",
        "/root/evil",
        f"/root/rootlink/etc/{marker}",
        "/root/rootlink/etc/passwd",
        f"/root/up/{marker}",
        f"/root/rootlink/root/{marker}",
        "/proc/sysrq-trigger",
        "/proc/1/root/etc/passwd",
    ]
    for path in attempts:
        r = write(http, capsule, path, b"pwned\n")
        # Either refused, or landed inside the capsule's own writable dirs.
        assert r.status_code in (204, 502), (path, r.text)
    assert _host_snapshot(watched) == before
    # What did land is visible inside the capsule, not on the host.
    assert read(http, capsule, f"/tmp/{marker}").content == b"pwned\n"
    assert read(http, capsule, f"/root/{marker}").content == b"pwned\n"
    # Reading through the planted link shows the capsule's (read-only host) view.
    with open("/etc/passwd", "rb") as f:
        assert read(http, capsule, "/root/evil").content == f.read()
    for p in (f"/tmp/{marker}", f"/root/{marker}", f"/etc/{marker}"):
        assert not os.path.exists(p)
    # Removing through a symlink to / must not remove anything on the host.
    assert (
        http.post(
            f"/v1/capsules/{capsule}/files/remove", json={"path": "/root/rootlink/etc/hostname"}
        ).status_code
        == 502
    )
    assert _host_snapshot(watched) == before
