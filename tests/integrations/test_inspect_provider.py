"""The Inspect provider driven directly, under asyncio and trio, against wrenn.local:
exec timeouts and output limits, Inspect's file errors, and capsules destroyed on every
way out (cleanup, cancellation, a task's last-chance cleanup)."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

pytest.importorskip("inspect_ai", reason="inspect-ai is not installed (needs Python 3.11+)")

from inspect_ai.util import OutputLimitExceededError
from inspect_ai.util._sandbox.environment import (
    SandboxUnavailableError,
    SandboxUserUnsupportedError,
)
from inspect_ai.util._sandbox.limits import (
    override_max_exec_output_size,
    override_max_read_file_size,
)
from inspect_ai.util._sandbox.registry import registry_find_sandboxenv

from wrenn import AsyncWrennClient
from wrenn.integrations.inspect import (
    WrennSandboxConfig,
    WrennSandboxEnvironment,
    resolve_config,
)
from wrenn.local import LocalServer

pytestmark = pytest.mark.anyio
TASK = "provider-tests"


@pytest.fixture
def config(local_server: LocalServer) -> WrennSandboxConfig:
    return WrennSandboxConfig(api_key=local_server.api_key, base_url=local_server.base_url)


@pytest.fixture
async def box(config: WrennSandboxConfig) -> AsyncIterator[WrennSandboxEnvironment]:
    await WrennSandboxEnvironment.task_init(TASK, config)
    environments = await WrennSandboxEnvironment.sample_init(TASK, config, {})
    try:
        environment = environments["default"]
        assert isinstance(environment, WrennSandboxEnvironment)
        yield environment
    finally:
        await WrennSandboxEnvironment.sample_cleanup(TASK, config, environments, False)
        await WrennSandboxEnvironment.task_cleanup(TASK, config, True)


async def _status(server: LocalServer, capsule_id: str) -> str:
    async with server.async_client() as client:
        try:
            info = await client.capsules.get(capsule_id)
        except Exception as exc:  # gone altogether
            return type(exc).__name__
        return info.status.value if info.status is not None else "?"


async def _wait_gone(server: LocalServer, capsule_id: str) -> None:
    """Until the capsule is stopped (a destroy that did not wait may still be stopping)."""
    with anyio.fail_after(30):
        while await _status(server, capsule_id) not in ("stopped", "WrennNotFoundError"):
            await anyio.sleep(0.1)


async def _live_ids(server: LocalServer) -> set[str]:
    async with server.async_client() as client:
        return {
            c.id for c in await client.capsules.list() if c.status and c.status.value != "stopped"
        }


def test_the_provider_is_registered_through_the_entry_point() -> None:
    assert registry_find_sandboxenv("wrenn") is WrennSandboxEnvironment


# --- exec -------------------------------------------------------------------------


async def test_exec_returns_output_and_exit_status(box: WrennSandboxEnvironment) -> None:
    result = await box.exec(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.success, result.returncode, result.stdout, result.stderr) == (
        False,
        3,
        "out\n",
        "err\n",
    )
    ok = await box.exec(["printf", "%s|", "a b", "$HOME", "'q'"])  # argv, no shell parsing
    assert ok.success and ok.stdout == "a b|$HOME|'q'|"


async def test_a_missing_program_is_a_failed_result_not_an_error(
    box: WrennSandboxEnvironment,
) -> None:
    result = await box.exec(["no-such-program-xyz"])
    assert not result.success and result.returncode == 127


async def test_exec_applies_input_env_and_cwd(box: WrennSandboxEnvironment) -> None:
    await box.write_file("sub/marker", "")
    result = await box.exec(
        ["sh", "-c", 'cat; echo "$A-$B"; pwd'],
        input=b"bytes in\n",
        env={"A": "1", "B": "two words"},
        cwd="sub",
    )
    assert result.stdout == f"bytes in\n1-two words\n{box.working_dir}/sub\n"
    absolute = await box.exec(["pwd"], cwd="/tmp")
    assert absolute.stdout == "/tmp\n"
    # The stdin file is removed afterwards.
    left = await box.exec(["sh", "-c", "ls -a /tmp | grep -c wrenn-inspect-stdin || true"])
    assert left.stdout.strip() == "0"


async def test_exec_past_its_timeout_raises_timeout_error_and_kills_the_command(
    box: WrennSandboxEnvironment,
) -> None:
    with anyio.fail_after(30):
        with pytest.raises(TimeoutError) as caught:
            await box.exec(["sh", "-c", "echo before; sleep 3; touch late"], timeout=1)
    assert "timed out after 1 seconds" in str(caught.value)
    assert getattr(caught.value, "truncated_output", "") == "before\n"
    await anyio.sleep(3)
    with pytest.raises(FileNotFoundError):
        await box.read_file("late")  # the command was killed, so it never got there


async def test_a_cancelled_exec_kills_the_command(box: WrennSandboxEnvironment) -> None:
    with anyio.move_on_after(0.5) as scope:
        await box.exec(["sh", "-c", "sleep 2; touch late-after-cancel"])
    assert scope.cancelled_caught
    await anyio.sleep(2.5)
    with pytest.raises(FileNotFoundError):
        await box.read_file("late-after-cancel")
    assert (await box.exec(["echo", "still usable"])).stdout == "still usable\n"


async def test_output_past_the_limit_raises_output_limit_exceeded(
    box: WrennSandboxEnvironment,
) -> None:
    with override_max_exec_output_size(1000):
        for stream in ("", ">&2"):
            with pytest.raises(OutputLimitExceededError) as caught:
                await box.exec(["sh", "-c", f"head -c 50000 /dev/zero | tr '\\0' a {stream}"])
            assert caught.value.truncated_output == "a" * 1000
        fits = await box.exec(["sh", "-c", "head -c 1000 /dev/zero | tr '\\0' b"])
        assert fits.stdout == "b" * 1000


async def test_exec_as_another_user_is_unsupported(box: WrennSandboxEnvironment) -> None:
    whoami = (await box.exec(["id", "-un"])).stdout.strip()
    uid = (await box.exec(["id", "-u"])).stdout.strip()
    assert (await box.exec(["id", "-un"], user=whoami)).stdout.strip() == whoami
    assert (await box.exec(["id", "-u"], user=uid)).stdout.strip() == uid
    with pytest.raises(SandboxUserUnsupportedError):
        await box.exec(["id"], user="someone-else")


async def test_exec_on_a_destroyed_capsule_is_sandbox_unavailable(
    box: WrennSandboxEnvironment,
) -> None:
    await box.capsule.destroy()
    with pytest.raises(SandboxUnavailableError):
        await box.exec(["true"])


# --- files ------------------------------------------------------------------------


async def test_files_round_trip_as_text_and_bytes(box: WrennSandboxEnvironment) -> None:
    await box.write_file("deep/er/text.txt", "line 1\r\nline 2\n")  # parents are created
    assert await box.read_file("deep/er/text.txt") == "line 1\r\nline 2\n"  # CRLF kept
    await box.write_file("/tmp/blob.bin", bytes(range(256)) * 4)
    assert await box.read_file("/tmp/blob.bin", text=False) == bytes(range(256)) * 4
    assert await box.read_file(f"{box.working_dir}/deep/er/text.txt") == "line 1\r\nline 2\n"
    await box.write_file("/tmp/latin.txt", b"\xff\xfe")
    with pytest.raises(UnicodeDecodeError):
        await box.read_file("/tmp/latin.txt")


async def test_file_errors_are_inspects(box: WrennSandboxEnvironment) -> None:
    with pytest.raises(FileNotFoundError):
        await box.read_file("no/such/file")
    await box.write_file("adir/inner", "x")
    for directory in ("adir", "adir/", ".", "/"):
        with pytest.raises(IsADirectoryError):
            await box.read_file(directory)
    with pytest.raises(IsADirectoryError):
        await box.write_file("adir", "x")
    with pytest.raises(PermissionError):
        await box.write_file("/proc/version", "x")
    with pytest.raises(PermissionError):
        await box.write_file("/etc/passwd", "x")  # a read-only file system


async def test_a_file_past_the_read_limit_raises_output_limit_exceeded(
    box: WrennSandboxEnvironment,
) -> None:
    await box.write_file("big.txt", "z" * 5000)
    with override_max_read_file_size(4096):
        with pytest.raises(OutputLimitExceededError) as caught:
            await box.read_file("big.txt")
        assert caught.value.truncated_output is None
        await box.write_file("small.txt", "z" * 4096)
        assert len(await box.read_file("small.txt")) == 4096


async def test_a_large_file_goes_up_as_a_stream(
    box: WrennSandboxEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wrenn.integrations import inspect as provider

    monkeypatch.setattr(provider, "INSPECT_STREAM_UPLOAD_OVER", 1024)
    payload = bytes(range(256)) * 40  # 10 KiB, over the (lowered) threshold
    await box.write_file("streamed.bin", payload)
    assert await box.read_file("streamed.bin", text=False) == payload


# --- lifecycle --------------------------------------------------------------------


async def test_sample_cleanup_destroys_the_capsule(
    config: WrennSandboxConfig, local_server: LocalServer
) -> None:
    environments = await WrennSandboxEnvironment.sample_init(TASK, config, {})
    environment = environments["default"]
    assert isinstance(environment, WrennSandboxEnvironment)
    capsule_id = environment.capsule.capsule_id
    assert await _status(local_server, capsule_id) == "running"
    connection = await environment.connection()
    assert connection.type == "wrenn" and capsule_id in connection.command
    await WrennSandboxEnvironment.sample_cleanup(TASK, config, environments, False)
    assert await _status(local_server, capsule_id) in ("stopped", "WrennNotFoundError")
    await WrennSandboxEnvironment.task_cleanup(TASK, config, True)


async def test_a_cancelled_sample_still_destroys_its_capsule(
    config: WrennSandboxConfig, local_server: LocalServer
) -> None:
    environments = await WrennSandboxEnvironment.sample_init(TASK, config, {})
    environment = environments["default"]
    assert isinstance(environment, WrennSandboxEnvironment)
    capsule_id = environment.capsule.capsule_id
    with anyio.move_on_after(0.5) as scope:
        try:
            await environment.exec(["sleep", "30"])
        finally:
            # As Inspect does: the cleanup of a cancelled sample runs shielded.
            with anyio.CancelScope(shield=True):
                await WrennSandboxEnvironment.sample_cleanup(TASK, config, environments, True)
    assert scope.cancelled_caught
    await _wait_gone(local_server, capsule_id)
    await WrennSandboxEnvironment.task_cleanup(TASK, config, True)


async def test_a_sample_cancelled_while_starting_leaves_no_capsule(
    config: WrennSandboxConfig, local_server: LocalServer
) -> None:
    before = await _live_ids(local_server)
    for delay in (0.0, 0.05, 0.2):
        with anyio.move_on_after(delay):
            await WrennSandboxEnvironment.sample_init(TASK, config, {})
    await WrennSandboxEnvironment.task_cleanup(TASK, config, True)
    with anyio.fail_after(30):
        while await _live_ids(local_server) - before:
            await anyio.sleep(0.1)


async def test_task_cleanup_destroys_what_sample_cleanup_never_reached(
    config: WrennSandboxConfig, local_server: LocalServer
) -> None:
    ids = []
    for _ in range(2):
        environment = (await WrennSandboxEnvironment.sample_init(TASK, config, {}))["default"]
        assert isinstance(environment, WrennSandboxEnvironment)
        ids.append(environment.capsule.capsule_id)
    await WrennSandboxEnvironment.task_cleanup(TASK, config, True)
    for capsule_id in ids:
        await _wait_gone(local_server, capsule_id)


async def test_samples_boot_from_a_snapshot(
    config: WrennSandboxConfig, local_server: LocalServer
) -> None:
    # Through the provider's own environment: bake a file, snapshot, boot a sample from it.
    environments = await WrennSandboxEnvironment.sample_init(TASK, config, {})
    first = environments["default"]
    assert isinstance(first, WrennSandboxEnvironment)
    await first.write_file("/root/baked.txt", "baked in")
    name = f"inspect-snap-{secrets.token_hex(4)}"
    await first.capsule.create_snapshot(name)
    await WrennSandboxEnvironment.sample_cleanup(TASK, config, environments, False)
    snapshot_config = config.model_copy(update={"snapshot": name})
    again = await WrennSandboxEnvironment.sample_init(TASK, snapshot_config, {})
    try:
        second = again["default"]
        assert isinstance(second, WrennSandboxEnvironment)
        assert await second.read_file("/root/baked.txt") == "baked in"
    finally:
        await WrennSandboxEnvironment.sample_cleanup(TASK, snapshot_config, again, False)
        await WrennSandboxEnvironment.task_cleanup(TASK, config, True)
        async with AsyncWrennClient(
            api_key=local_server.api_key, base_url=local_server.base_url
        ) as client:
            await client.snapshots.delete(name)


# --- config -----------------------------------------------------------------------


def test_config_forms(tmp_path: Path) -> None:
    assert resolve_config(None) == WrennSandboxConfig()
    assert resolve_config("python-3.12").template == "python-3.12"
    path = tmp_path / "wrenn.json"
    path.write_text(json.dumps({"template": "t", "vcpus": 2}))
    assert resolve_config(str(path)) == WrennSandboxConfig(template="t", vcpus=2)
    yaml_path = tmp_path / "wrenn.yaml"
    yaml_path.write_text("snapshot: s\nmemory_mb: 256\n")
    assert resolve_config(str(yaml_path)).boot_from == "s"
    with pytest.raises(ValueError):
        WrennSandboxConfig(template="a", snapshot="b")
    with pytest.raises(ValueError):
        WrennSandboxConfig(working_dir="relative")
    with pytest.raises(ValueError):
        WrennSandboxConfig(vcpus=0)
    assert WrennSandboxEnvironment.config_deserialize({"template": "x"}) == WrennSandboxConfig(
        template="x"
    )


def test_the_api_key_never_leaves_the_config() -> None:
    config = WrennSandboxConfig(api_key="sk-planted-secret", template="t")
    assert "sk-planted-secret" not in repr(config)
    assert "sk-planted-secret" not in config.model_dump_json()
    assert "api_key" not in config.model_dump()


def test_default_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WRENN_INSPECT_MAX_SANDBOXES", raising=False)
    assert WrennSandboxEnvironment.default_concurrency() == 16
    monkeypatch.setenv("WRENN_INSPECT_MAX_SANDBOXES", "3")
    assert WrennSandboxEnvironment.default_concurrency() == 3
    monkeypatch.setenv("WRENN_INSPECT_MAX_SANDBOXES", "0")
    with pytest.raises(ValueError):
        WrennSandboxEnvironment.default_concurrency()
