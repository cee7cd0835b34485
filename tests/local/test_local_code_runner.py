"""wrenn.local's code runner: the host-routed port proxy, its Jupyter API and the kernel."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import httpx_ws
import pytest

from wrenn._code_runner import proxy_token
from wrenn.code_runner import AsyncCapsule
from wrenn.local import LocalServer, _kernels

from .conftest import needs_bwrap
from .helpers import create, destroy, error_of, pause, resume, sh

pytestmark = pytest.mark.local


@pytest.fixture
def runner(http: httpx.Client) -> Iterator[str]:
    capsule_id = create(http, template="code-runner-beta")
    try:
        yield capsule_id
    finally:
        destroy(http, capsule_id)


def port_client(server: LocalServer, capsule_id: str, port: int = 8888) -> httpx.Client:
    return httpx.Client(
        base_url=server.base_url,
        headers={
            "Host": f"{port}-{capsule_id}.127.0.0.1:{server.port}",
            # The capsule's proxy credential, as the SDK's code runner sends it.
            "X-Wrenn-Proxy-Token": proxy_token(server.api_key, capsule_id),
        },
        timeout=30,
    )


def test_jupyter_rest_api(server: LocalServer, runner: str) -> None:
    with port_client(server, runner) as jupyter:
        assert jupyter.get("/api/kernels").json() == []
        assert jupyter.get("/api/status").json()["kernels"] == 0
        assert jupyter.get("/api/kernelspecs").json()["default"] == "wrenn"
        started = jupyter.post("/api/kernels", json={"name": "wrenn"})
        assert started.status_code == 201, started.text
        kernel = started.json()
        assert kernel["name"] == "wrenn" and kernel["execution_state"] == "idle"
        assert [k["id"] for k in jupyter.get("/api/kernels").json()] == [kernel["id"]]
        assert jupyter.get(f"/api/kernels/{kernel['id']}").json()["id"] == kernel["id"]
        assert jupyter.post(f"/api/kernels/{kernel['id']}/interrupt").status_code == 204
        assert jupyter.delete(f"/api/kernels/{kernel['id']}").status_code == 204
        assert jupyter.get("/api/kernels").json() == []
        assert jupyter.get(f"/api/kernels/{kernel['id']}").status_code == 404
        assert jupyter.post("/api/kernels", json={"name": "ruby"}).status_code == 404


@needs_bwrap
def test_the_kernel_runs_inside_the_capsule(
    server: LocalServer, http: httpx.Client, runner: str
) -> None:
    with port_client(server, runner) as jupyter:
        jupyter.post("/api/kernels", json={"name": "wrenn"}).raise_for_status()
    # The kernel is a process of the capsule (its own pid namespace), not of the host.
    out = sh(http, runner, "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '")["stdout"]
    assert "ipykernel_launcher" in out
    assert (
        "WRENN_API_KEY"
        not in sh(http, runner, "cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'")["stdout"]
    )


def test_credentials_sent_to_a_capsule_port_are_refused(server: LocalServer, runner: str) -> None:
    with port_client(server, runner) as jupyter:
        for headers in ({"X-API-Key": server.api_key}, {"Authorization": "Bearer anything"}):
            r = jupyter.get("/api/kernels", headers=headers)
            assert r.status_code == 403 and "credentials" in error_of(r)[2]
        with (
            pytest.raises(httpx_ws.WebSocketUpgradeError) as refused,
            httpx_ws.connect_ws(
                "/api/kernels/x/channels", jupyter, headers={"X-API-Key": server.api_key}
            ),
        ):
            pass
        assert refused.value.response.status_code == 403


def test_what_the_proxy_does_not_serve(
    server: LocalServer, http: httpx.Client, capsule: str, runner: str
) -> None:
    with port_client(server, runner, port=8080) as other_port:
        r = other_port.get("/")
        assert r.status_code == 404 and "8888" in error_of(r)[2]
    with port_client(server, capsule) as not_a_runner:
        assert not_a_runner.get("/api/kernels").status_code == 404
    with port_client(server, "cl-nosuchcapsule000000000000") as missing:
        assert missing.get("/api/kernels").status_code == 404
    pause(http, runner)
    with port_client(server, runner) as paused:
        assert paused.get("/api/kernels").status_code == 409
    resume(http, runner)


def test_create_says_what_to_install_without_the_kernel(
    http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_kernels, "missing_packages", lambda: ["ipykernel"])
    r = http.post("/v1/capsules", json={"template": "code-runner-beta"})
    assert r.status_code == 400
    assert "wrenn[local-code-runner]" in error_of(r)[2]


def test_a_symlink_in_place_of_a_kernel_socket_is_refused(tmp_path: Path) -> None:
    # Capsule code can write the run directory; following a link there would
    # connect the server to a socket of the host's choosing.
    host_socket = socket.socket(socket.AF_UNIX)
    host_socket.bind(str(tmp_path / "host.sock"))
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(tmp_path / "host.sock", run / "kabc-1")

    class Proc:
        exited = asyncio.Event()
        exit_code = None

    try:
        with pytest.raises(_kernels.KernelStartError, match="not a socket"):
            asyncio.run(_kernels._open_sockets(run, "kabc", Proc()))  # type: ignore[arg-type]
    finally:
        host_socket.close()


def test_interpreter_binds_cover_the_running_python() -> None:
    binds = _kernels.interpreter_binds()
    for path in (sys.base_prefix, sys.prefix):
        real = os.path.realpath(path)
        assert real.startswith("/usr") or any(real == b or real.startswith(b + "/") for b in binds)
    assert not any(b == "/usr" or b.startswith("/usr/") for b in binds)
    assert len(set(binds)) == len(binds)


@pytest.mark.anyio
async def test_cancelling_run_code_interrupts_the_cell(local_server: LocalServer) -> None:
    keys = {"api_key": local_server.api_key, "base_url": local_server.base_url}
    async with await AsyncCapsule.create(**keys) as capsule:
        slow = "import time\nfor _ in range(300): time.sleep(0.1)\nfinished = True"
        with anyio.move_on_after(1.5) as scope:
            await capsule.run_code(slow, timeout=60)
        assert scope.cancelled_caught
        after = await capsule.run_code("'finished' in globals()", timeout=10)
        assert after.error is None and after.text == "False"


def test_a_kernel_that_cannot_start_is_a_clear_500(
    server: LocalServer, runner: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel runs the server's interpreter: point that at a program that fails.
    monkeypatch.setattr(sys, "executable", "/bin/false")
    with port_client(server, runner) as jupyter:
        r = jupyter.post("/api/kernels", json={"name": "wrenn"})
        assert r.status_code == 500
        assert "kernel did not start" in r.json()["message"]
        assert jupyter.get("/api/kernels").json() == []


def test_invalid_client_messages_are_dropped_not_fatal(server: LocalServer, runner: str) -> None:
    from wrenn._code_runner import execute_request

    with port_client(server, runner) as jupyter:
        kernel = jupyter.post("/api/kernels", json={"name": "wrenn"}).json()
        with httpx_ws.connect_ws(f"/api/kernels/{kernel['id']}/channels", jupyter) as ws:
            for bad in ("not json", "[]", '{"channel": "shell"}', '{"header": {}}'):
                ws.send_text(bad)
            request = execute_request("40 + 2")
            ws.send_text(json.dumps(request))
            for _ in range(50):
                message = ws.receive_json(timeout=10)
                if (
                    message["parent_header"].get("msg_id") == request["header"]["msg_id"]
                    and message["msg_type"] == "execute_result"
                ):
                    assert message["content"]["data"]["text/plain"] == "42"
                    break
            else:
                raise AssertionError("no result")
