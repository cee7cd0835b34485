"""Realistic Wrenn response bodies (PROTOCOL.md §1.2, §2.2, §2.6).

Everything here is pure data: functions return dicts, lists or bytes, and know
nothing about sockets. Shapes follow the v0.1.5 handlers plus the SDK 0.3.0
models, so a correct SDK parses them without complaint.
"""

from __future__ import annotations

import base64
import html
import json
from typing import Any

TS = "2026-11-01T10:00:00Z"
TS_LATER = "2026-11-01T10:05:00Z"

# Error code per HTTP status, as the Wrenn control plane emits them (§1.1).
ERROR_CODES: dict[int, tuple[str, str]] = {
    400: ("invalid_request", "invalid request"),
    401: ("unauthorized", "invalid API key"),
    403: ("forbidden", "forbidden"),
    404: ("not_found", "resource not found"),
    408: ("request_timeout", "request timed out"),
    409: ("invalid_state", "resource is not running"),
    413: ("too_large", "file exceeds 100 MB limit"),
    422: ("invalid_request", "unprocessable request"),
    429: ("rate_limited", "too many requests"),
    500: ("internal_error", "an internal error occurred"),
    501: ("agent_error", "not implemented"),
    502: ("agent_error", "agent request failed"),
    503: ("host_unavailable", "sandbox host is not reachable"),
    504: ("gateway_timeout", "gateway timed out"),
}


def dumps(value: Any) -> bytes:
    """Compact JSON with the trailing newline Go's json.Encoder writes."""
    return json.dumps(value, separators=(",", ":")).encode() + b"\n"


def error_envelope(status: int, message: str | None = None) -> dict[str, Any]:
    code, default_message = ERROR_CODES.get(status, ("error", f"HTTP {status}"))
    return {"error": {"code": code, "message": message or default_message}}


def capsule_id(n: int) -> str:
    """A syntactically valid capsule id: ``cl-`` + 25 base36 characters."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    for _ in range(25):
        n, r = divmod(n, 36)
        out = digits[r] + out
    return "cl-" + out


def capsule(cid: str, status: str = "running", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": cid,
        "status": status,
        "template": "minimal",
        "vcpus": 1,
        "memory_mb": 512,
        "timeout_sec": 0,
        "host_ip": "10.0.0.5",
        "created_at": TS,
        "started_at": TS,
        "last_active_at": TS_LATER,
        "last_updated": TS_LATER,
        "metadata": {
            "kernel_version": "6.1.102",
            "firecracker_version": "1.10.1",
            "agent_version": "0.1.5",
            "envd_version": "0.2.0",
        },
    }
    body.update(overrides)
    return body


def capsule_list(statuses: tuple[str, ...] = ("running", "running", "paused")) -> list[Any]:
    return [capsule(capsule_id(i + 1), status) for i, status in enumerate(statuses)]


def unknown_capsule(cid: str) -> dict[str, Any]:
    """A capsule from a newer server: unknown status and unknown fields."""
    return capsule(
        cid,
        "migrating",
        migration={"target_host": "host-abc", "progress": 0.4},
        gpu_count=0,
        labels=["a", "b"],
    )


def template(name: str, *, platform: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "type": "base" if platform else "snapshot",
        "size_bytes": 268435456,
        "created_at": TS,
        "platform": platform,
    }
    if not platform:
        body.update(vcpus=1, memory_mb=512, metadata={"source": "cl-test"})
    return body


def template_list() -> list[Any]:
    return [template("snap-one"), template("snap-two"), template("minimal", platform=True)]


def stats(range_: str) -> dict[str, Any]:
    return {
        "range": range_,
        "current": {"running_count": 2, "vcpus_reserved": 2, "memory_mb_reserved": 1024},
        "peaks": {"running_count": 5, "vcpus": 6, "memory_mb": 3072},
        "series": {
            "labels": [TS, TS_LATER],
            "running": [1, 2],
            "vcpus": [1, 2],
            "memory_mb": [512, 1024],
        },
    }


def usage() -> dict[str, Any]:
    return {
        "from": "2026-10-30",
        "to": "2026-11-28",
        "points": [
            {"date": "2026-11-27", "cpu_minutes": 12.5, "ram_mb_minutes": 6400.0},
            {"date": "2026-11-28", "cpu_minutes": 3.0, "ram_mb_minutes": 1536.0},
        ],
    }


def metrics(cid: str, range_: str) -> dict[str, Any]:
    return {
        "sandbox_id": cid,
        "range": range_,
        "points": [
            {
                "timestamp_unix": 1793527200 + i * 5,
                "cpu_pct": 1.5 + i,
                "mem_bytes": 104857600,
                "disk_bytes": 52428800,
            }
            for i in range(3)
        ],
    }


def exec_result(cid: str, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    cmd = str(request.get("cmd", ""))
    if request.get("background"):
        tag = request.get("tag") or "proc-0a1b2c3d"
        return 202, {"sandbox_id": cid, "cmd": cmd, "pid": 4242, "tag": tag}
    return 200, {
        "sandbox_id": cid,
        "cmd": cmd,
        "stdout": "hello\n",
        "stderr": "",
        "exit_code": 0,
        "duration_ms": 12,
        "encoding": "utf-8",
    }


def processes() -> dict[str, Any]:
    return {
        "processes": [
            {"pid": 1, "cmd": "/sbin/init"},
            {"pid": 4242, "tag": "proc-0a1b2c3d", "cmd": "sleep", "args": ["60"]},
        ]
    }


def file_entry(path: str, kind: str = "file") -> dict[str, Any]:
    name = path.rstrip("/").rsplit("/", 1)[-1] or "/"
    return {
        "name": name,
        "path": path,
        "type": kind,
        "size": 0 if kind == "directory" else 17,
        "mode": 0o755 if kind == "directory" else 0o644,
        "permissions": "drwxr-xr-x" if kind == "directory" else "-rw-r--r--",
        "owner": "user",
        "group": "user",
        "modified_at": 1793527200,
    }


def dir_listing(path: str) -> dict[str, Any]:
    base = path.rstrip("/") or ""
    return {
        "entries": [
            file_entry(f"{base}/a.txt"),
            file_entry(f"{base}/b.txt"),
            file_entry(f"{base}/sub", "directory"),
        ]
    }


def file_content(path: str) -> bytes:
    """Content of ``files/read``: mirrors the path so crosstalk is visible."""
    return f"contents of {path}\n".encode()


def sse_event(kind: str, n: int, **extra: Any) -> dict[str, Any]:
    cid = capsule_id(n)
    body: dict[str, Any] = {
        "event": kind,
        "outcome": "success",
        "resource": {"id": cid, "type": "capsule"},
        "actor": {"type": "api_key", "id": "key-0000000000000000000000001", "name": "ci"},
        "metadata": {},
        "sandbox": capsule(cid),
        "timestamp": TS,
    }
    body.update(extra)
    return body


def sse_frame(
    data: str, *, event: str | None = None, id_: str | None = None, retry: int | None = None
) -> bytes:
    lines = []
    if retry is not None:
        lines.append(f"retry: {retry}")
    if id_ is not None:
        lines.append(f"id: {id_}")
    if event is not None:
        lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


def sse_json_frame(
    payload: dict[str, Any], *, id_: str | None = None, retry: int | None = None
) -> bytes:
    return sse_frame(
        json.dumps(payload, separators=(",", ":")), event=payload["event"], id_=id_, retry=retry
    )


NGINX_PAD_LINE = "<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n"


def nginx_page(status: int, reason: str, *, pad_to: int = 0) -> bytes:
    """An nginx-style error page; ``pad_to`` grows it with comment lines."""
    page = (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n"
        "<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n"
    )
    if pad_to > len(page):
        page += NGINX_PAD_LINE * ((pad_to - len(page)) // len(NGINX_PAD_LINE) + 1)
    return page.encode()


def captive_portal_page() -> bytes:
    return (
        b"<!DOCTYPE html>\n<html><head><title>Welcome to Airport WiFi</title></head>"
        b"<body><h1>Please accept the terms of use</h1>"
        b'<form method="post" action="/accept"><button>Accept</button></form></body></html>\n'
    )


def header_echo_page(headers: list[tuple[str, str]]) -> bytes:
    """A proxy error page that echoes request headers (and thus any API key)."""
    dump = "\n".join(f"{html.escape(k)}: {html.escape(v)}" for k, v in headers)
    return (
        "<html><head><title>400 Bad Request</title></head><body>"
        "<h1>400 Bad Request</h1><p>Request Header Or Cookie Too Large</p>"
        f"<pre>{dump}</pre><hr><center>nginx</center></body></html>\n"
    ).encode()


def pty_output(text: str) -> dict[str, Any]:
    return {"type": "output", "data": base64.b64encode(text.encode()).decode()}
