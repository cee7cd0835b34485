"""Non-interactive commands: tables, --json, exit codes, files with streaming."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Cli

MISSING = "cl-0000000000000000000000000"


def test_help_everywhere_has_examples(cli: Cli) -> None:
    top = cli.ok("--help").stdout
    assert "Exit codes:" in top and "Examples:" in top
    for command in (
        ["capsules", "create"],
        ["capsules", "list"],
        ["snapshots", "create"],
        ["files", "put"],
        ["exec"],
        ["shell"],
        ["events"],
        ["local", "serve"],
    ):
        text = cli.ok(*command, "--help").stdout
        assert "Usage: wrenn " + " ".join(command) in text
        assert "Example" in text, command


def test_console_script_is_installed(cli: Cli) -> None:
    script = shutil.which("wrenn", path=str(Path(sys.executable).parent))
    assert script is not None
    done = subprocess.run(
        [script, "--version"], env=cli.env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and done.stdout.startswith("wrenn, version ")


def test_capsule_lifecycle_tables_and_json(cli: Cli) -> None:
    created = cli.ok("capsules", "create", "--json").json()
    capsule = created["id"]
    try:
        assert created["status"] == "running"
        table = cli.ok("capsules", "list").stdout
        header, *rows = table.splitlines()
        assert header.split()[:3] == ["ID", "STATUS", "TEMPLATE"]
        assert any(row.split()[:2] == [capsule, "running"] for row in rows)
        assert capsule in [c["id"] for c in cli.ok("--json", "capsules", "list").json()]

        record = cli.ok("capsules", "get", capsule).stdout
        assert any(line.split() == ["status", "running"] for line in record.splitlines())

        assert cli.ok("capsules", "pause", capsule, "--json").json()["status"] == "paused"
        assert cli.ok("capsules", "resume", capsule, "--json").json()["status"] == "running"
        assert cli.ok("capsules", "ping", capsule).stdout == ""
    finally:
        done = cli.ok("capsules", "destroy", capsule)
    assert f"destroyed {capsule}" in done.stderr
    gone = cli("capsules", "get", capsule, "--json")
    assert gone.returncode in (0, 3)
    if gone.returncode == 0:
        assert gone.json()["status"] == "stopped"


def test_snapshots(cli: Cli, capsule_id: str) -> None:
    name = "cli-test-snapshot"
    template = cli.ok("snapshots", "create", capsule_id, "--name", name, "--json").json()
    try:
        assert template["name"] == name
        assert name in cli.ok("snapshots", "list").stdout
        listed = cli.ok("snapshots", "list", "--type", "snapshot", "--json").json()
        assert name in [t["name"] for t in listed]
    finally:
        cli.ok("snapshots", "delete", name)
    assert name not in [t["name"] for t in cli.ok("snapshots", "list", "--json").json()]


def test_usage_and_stats(cli: Cli, capsule_id: str) -> None:
    assert cli.ok("stats", "--json").json()["current"]["running_count"] >= 1
    assert "running" in cli.ok("stats").stdout
    assert "points" in cli.ok("usage", "--json").json()
    assert cli.ok("usage").returncode == 0


def test_events_tail(cli: Cli, local_server: object) -> None:
    tail = subprocess.Popen(
        [sys.executable, "-m", "wrenn", "events", "--count", "2", "--json"],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        capsule = None
        # The stream is subscribed once the CLI is up; keep making events until it has two.
        for _ in range(10):
            capsule = cli.ok("capsules", "create", "-q").stdout.strip()
            cli.ok("capsules", "destroy", capsule)
            if tail.poll() is not None:
                break
        out, err = tail.communicate(timeout=60)
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait(timeout=10)
    assert tail.returncode == 0, err
    lines = [line for line in out.splitlines() if line]
    assert len(lines) == 2
    assert all(json.loads(line)["event"].startswith("capsule.") for line in lines)


def test_exec_streams_and_exits_with_the_command_code(cli: Cli, capsule_id: str) -> None:
    done = cli("exec", capsule_id, "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (done.returncode, done.stdout, done.stderr) == (7, "out\n", "err\n")
    done = cli.ok("exec", capsule_id, "--env", "A=1", "--cwd", "/tmp", "-s", "--", "echo $A; pwd")
    assert done.stdout == "1\n/tmp\n"
    bad = cli("exec", capsule_id, "--env", "nope", "--", "true")
    assert bad.returncode == 2 and "NAME=VALUE" in bad.stderr


def test_files_round_trip_with_streaming(cli: Cli, capsule_id: str, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    cli.ok("files", "mkdir", capsule_id, "/root/cli")
    put = cli.ok("files", "put", capsule_id, str(source), "/root/cli/")
    assert "/root/cli/big.bin" in put.stderr
    table = cli.ok("files", "ls", capsule_id, "/root/cli").stdout
    assert "/root/cli/big.bin" in table and "3.0 MiB" in table
    entries = cli.ok("files", "ls", capsule_id, "/root/cli", "--json").json()
    assert [(e["name"], e["size"]) for e in entries] == [("big.bin", len(data))]

    target = tmp_path / "copy.bin"
    cli.ok("files", "get", capsule_id, "/root/cli/big.bin", str(target))
    assert target.read_bytes() == data
    assert not list(tmp_path.glob("*.part"))

    cli.ok("files", "put", capsule_id, "-", "/root/cli/stdin.txt", input=b"from stdin\n")
    assert cli.ok("files", "get", capsule_id, "/root/cli/stdin.txt", "-").stdout == "from stdin\n"

    cli.ok("files", "rm", capsule_id, "/root/cli/big.bin")
    missing = cli("files", "get", capsule_id, "/root/cli/big.bin", str(tmp_path / "x"))
    assert missing.returncode == 3, missing.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.part").exists()


@pytest.mark.parametrize(
    ("args", "env", "code", "needle"),
    [
        (["capsules", "get", MISSING], {}, 3, "wrenn: not found:"),
        (["capsules", "list"], {"WRENN_API_KEY": ""}, 5, "No API key provided"),
        (["capsules", "list"], {"WRENN_API_KEY": "wrn_wrong"}, 5, "wrenn: authentication:"),
        (["capsules", "list"], {"WRENN_BASE_URL": "http://127.0.0.1:9"}, 7, "wrenn: connection:"),
        (["capsules", "bogus"], {}, 2, "No such command"),
        (["capsules", "create", "--vcpus", "0"], {}, 2, "Invalid value"),
    ],
    ids=["not-found", "no-key", "bad-key", "unreachable", "usage", "bad-option"],
)
def test_errors_are_one_line_with_their_exit_code(
    cli: Cli, args: list[str], env: dict[str, str], code: int, needle: str
) -> None:
    done = cli(*args, env=env)
    assert done.returncode == code, done.stderr
    assert needle in done.stderr
    assert "Traceback" not in done.stderr
    if code != 2:
        assert len(done.stderr.strip().splitlines()) == 1


def test_conflict_exit_code(cli: Cli, capsule_id: str) -> None:
    cli.ok("capsules", "pause", capsule_id)
    done = cli("capsules", "pause", capsule_id)
    assert done.returncode == 4, (done.returncode, done.stderr)
    assert done.stderr.startswith("wrenn: conflict:")


def test_debug_shows_the_traceback(cli: Cli) -> None:
    done = cli("capsules", "get", MISSING, "--debug")
    assert done.returncode == 1 and "Traceback" in done.stderr
    assert "WrennNotFoundError" in done.stderr


def test_local_serve_prints_what_to_export(cli: Cli) -> None:
    env = {k: v for k, v in cli.env.items() if not k.startswith("WRENN_")}
    server = subprocess.Popen(
        [sys.executable, "-m", "wrenn", "local", "serve", "--isolation", "none"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        key = server.stdout.readline().strip()
        assert url.startswith("WRENN_BASE_URL=http://127.0.0.1:")
        assert key.startswith("WRENN_API_KEY=wrn_")
        listed = subprocess.run(
            [sys.executable, "-m", "wrenn", "--json", "capsules", "list"],
            env={
                **env,
                "WRENN_BASE_URL": url.split("=", 1)[1],
                "WRENN_API_KEY": key.split("=", 1)[1],
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert listed.returncode == 0 and listed.stdout.strip() == "[]", listed.stderr
    finally:
        server.terminate()
        try:
            assert server.wait(timeout=30) == 0
        finally:
            if server.poll() is None:
                server.kill()
                server.wait(timeout=10)
            if server.stdout is not None:
                server.stdout.close()
