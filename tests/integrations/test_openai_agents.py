"""The OpenAI Agents SDK's sandbox interface on Wrenn capsules (wrenn.local): a
``SandboxAgent`` run by the SDK's own ``Runner`` with a scripted model (no model is
called), and sessions that pause on exit and are resumed, or recreated and hydrated."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("agents.sandbox", reason="openai-agents is not installed")

from agents import Runner, set_tracing_disabled
from agents.items import ModelResponse
from agents.models.interface import Model
from agents.run_config import RunConfig, SandboxRunConfig
from agents.sandbox import SandboxAgent
from agents.sandbox.snapshot import LocalSnapshotSpec
from agents.usage import Usage
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from wrenn import WrennNotFoundError
from wrenn.integrations.openai_agents import (
    WrennSandboxClient,
    WrennSandboxClientOptions,
    WrennSandboxSession,
    WrennSandboxSessionState,
)
from wrenn.local import LocalServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the Agents SDK is written for asyncio


@pytest.fixture(autouse=True)
def no_tracing_export() -> Iterator[None]:
    set_tracing_disabled(True)  # the SDK would send traces to OpenAI
    yield


@pytest.fixture
def client(local_server: LocalServer) -> WrennSandboxClient:
    return WrennSandboxClient(api_key=local_server.api_key, base_url=local_server.base_url)


async def _status(server: LocalServer, capsule_id: str) -> str:
    async with server.async_client() as wrenn:
        try:
            info = await wrenn.capsules.get(capsule_id)
        except WrennNotFoundError:
            return "stopped"  # destroyed and forgotten
        return info.status.value if info.status is not None else "?"


class RecordingClient(WrennSandboxClient):
    """Notes the capsule of every session it creates."""

    capsules: list[str]

    async def create(self, **kwargs: Any) -> Any:
        session = await super().create(**kwargs)
        self.capsules = [*getattr(self, "capsules", []), session._inner.capsule_id]
        return session


class ScriptedModel(Model):
    """Asks for one ``exec_command`` call, then answers with what the tool returned."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.calls = 0

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        self.calls += 1
        items = args[1] if len(args) > 1 else kwargs["input"]
        outputs = [
            item
            for item in (items if isinstance(items, list) else [])
            if isinstance(item, dict) and item.get("type") == "function_call_output"
        ]
        if not outputs:
            call = ResponseFunctionToolCall(
                id="fc_1",
                call_id="call_1",
                name="exec_command",
                arguments=json.dumps({"cmd": self.command, "yield_time_ms": 30000}),
                type="function_call",
                status="completed",
            )
            return ModelResponse(output=[call], usage=Usage(), response_id=None)
        text = str(outputs[-1].get("output", ""))
        message = ResponseOutputMessage(
            id="msg_1",
            content=[ResponseOutputText(text=text, type="output_text", annotations=[])],
            role="assistant",
            status="completed",
            type="message",
        )
        return ModelResponse(output=[message], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError


async def test_a_sandbox_agent_runs_its_tool_calls_in_a_capsule(
    local_server: LocalServer,
) -> None:
    client = RecordingClient(api_key=local_server.api_key, base_url=local_server.base_url)
    model = ScriptedModel('echo "$GREETING from $(pwd)" | tee note.txt')
    agent = SandboxAgent(name="worker", instructions="Use the shell.", model=model)
    options = WrennSandboxClientOptions(envs={"GREETING": "hello-capsule"})
    result = await Runner.run(
        agent,
        "Say hello from the sandbox.",
        run_config=RunConfig(sandbox=SandboxRunConfig(client=client, options=options)),
    )
    assert model.calls == 2
    assert "hello-capsule from /workspace" in str(result.final_output)
    [capsule_id] = client.capsules  # one capsule for the run ...
    assert await _status(local_server, capsule_id) == "stopped"  # ... destroyed when it ended


async def test_a_paused_session_is_resumed_with_its_files(
    client: WrennSandboxClient, local_server: LocalServer
) -> None:
    session = await client.create(options=WrennSandboxClientOptions(pause_on_exit=True))
    async with session:
        await session.write(Path("kept.txt"), io.BytesIO(b"still here"))
        result = await session.exec("cat", "kept.txt")
        assert result.stdout == b"still here"
    inner = session._inner
    assert isinstance(inner, WrennSandboxSession)
    capsule_id = inner.capsule_id
    assert await _status(local_server, capsule_id) == "paused"

    payload = client.serialize_session_state(session.state)
    assert local_server.api_key not in json.dumps(payload, default=str)
    state = client.deserialize_session_state(payload)
    assert isinstance(state, WrennSandboxSessionState)
    resumed = await client.resume(state)
    resumed.state.pause_on_exit = False  # destroy it this time
    async with resumed:
        resumed_inner = resumed._inner
        assert isinstance(resumed_inner, WrennSandboxSession)
        assert resumed_inner.capsule_id == capsule_id  # the same capsule, running again
        assert await _status(local_server, capsule_id) == "running"
        assert (await resumed.read(Path("kept.txt"))).read() == b"still here"
        assert await resumed.running()
    assert await _status(local_server, capsule_id) == "stopped"


async def test_a_gone_capsule_is_replaced_and_hydrated_from_the_snapshot(
    client: WrennSandboxClient, local_server: LocalServer, tmp_path: Path
) -> None:
    session = await client.create(
        snapshot=LocalSnapshotSpec(base_path=tmp_path),
        options=WrennSandboxClientOptions(),
    )
    async with session:
        await session.write(Path("sub/data.bin"), io.BytesIO(bytes(range(256))))
    first = session.state
    assert isinstance(first, WrennSandboxSessionState)
    gone = first.capsule_id
    assert await _status(local_server, gone) == "stopped"

    state = client.deserialize_session_state(client.serialize_session_state(first))
    resumed = await client.resume(state)
    async with resumed:
        inner = resumed._inner
        assert isinstance(inner, WrennSandboxSession)
        assert inner.capsule_id != gone  # a new capsule ...
        data = (await resumed.read(Path("sub/data.bin"))).read()
        assert data == bytes(range(256))  # ... with the workspace restored
        missing = await resumed.exec("test", "-e", "nothing-here")
        assert missing.exit_code != 0
    assert await _status(local_server, inner.capsule_id) == "stopped"


async def test_session_errors_are_the_sdks(
    client: WrennSandboxClient, local_server: LocalServer
) -> None:
    from agents.sandbox.errors import ExecTimeoutError, WorkspaceReadNotFoundError

    session = await client.create(options=WrennSandboxClientOptions())
    async with session:
        with pytest.raises(WorkspaceReadNotFoundError):
            await session.read(Path("no/such/file"))
        with pytest.raises(ExecTimeoutError):
            await session.exec("sleep", "5", timeout=0.5)
        await session.write(Path("big.txt"), io.BytesIO(b"x" * 10000))
        assert await session.read_bounded(Path("big.txt"), max_bytes=100) == b"x" * 100
        failed = await session.exec("sh", "-c", "echo oops >&2; exit 4")
        assert (failed.exit_code, failed.stderr) == (4, b"oops\n")
    inner = session._inner
    assert isinstance(inner, WrennSandboxSession)
    assert await _status(local_server, inner.capsule_id) == "stopped"
