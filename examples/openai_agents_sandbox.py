"""An OpenAI Agents SDK `SandboxAgent` whose shell runs in a Wrenn capsule.

Needs `pip install 'wrenn[openai-agents]'`. The model is scripted (one `exec_command` call,
then it repeats what the tool said), so the example runs offline; give the agent a real
model (`model="gpt-..."`, with OPENAI_API_KEY set) to let one drive the capsule instead.
The session pauses its capsule on exit, and is then resumed with its files intact.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path
from typing import Any

from _backend import backend


async def run(keys: dict[str, str]) -> None:
    from agents import Runner, set_tracing_disabled
    from agents.items import ModelResponse
    from agents.models.interface import Model
    from agents.run_config import RunConfig, SandboxRunConfig
    from agents.sandbox import SandboxAgent
    from agents.usage import Usage
    from openai.types.responses import (
        ResponseFunctionToolCall,
        ResponseOutputMessage,
        ResponseOutputText,
    )

    from wrenn.integrations.openai_agents import WrennSandboxClient, WrennSandboxClientOptions

    set_tracing_disabled(True)  # no trace upload for an offline example

    class Scripted(Model):
        async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
            items = kwargs.get("input", args[1] if len(args) > 1 else None)
            items = items if isinstance(items, list) else []
            done = [
                i for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"
            ]
            if not done:
                command = {"cmd": "uname -s; echo 'notes' > notes.txt; ls", "yield_time_ms": 30000}
                output: Any = ResponseFunctionToolCall(
                    id="fc_1",
                    call_id="call_1",
                    name="exec_command",
                    arguments=json.dumps(command),
                    type="function_call",
                    status="completed",
                )
            else:
                text = ResponseOutputText(
                    text=str(done[-1]["output"]), type="output_text", annotations=[]
                )
                output = ResponseOutputMessage(
                    id="msg_1", content=[text], role="assistant", status="completed", type="message"
                )
            return ModelResponse(output=[output], usage=Usage(), response_id=None)

        def stream_response(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError

    client = WrennSandboxClient(**keys)
    agent = SandboxAgent(name="worker", instructions="Work in the sandbox.", model=Scripted())
    sandbox = SandboxRunConfig(client=client, options=WrennSandboxClientOptions())
    result = await Runner.run(agent, "Look around.", run_config=RunConfig(sandbox=sandbox))
    print(f"the agent said: {result.final_output!r}")

    # A session of our own: it pauses its capsule on exit, and resume() picks it up again.
    session = await client.create(options=WrennSandboxClientOptions(pause_on_exit=True))
    async with session:
        await session.exec("sh", "-c", "echo kept > kept.txt")
    state = client.deserialize_session_state(client.serialize_session_state(session.state))
    resumed = await client.resume(state)
    resumed.state.pause_on_exit = False  # this time, destroy it on exit
    async with resumed:
        kept = (await resumed.read(Path("kept.txt"))).read().decode().strip()
        print(f"resumed capsule {state.capsule_id}: kept.txt says {kept!r}")


def main() -> None:
    if importlib.util.find_spec("agents") is None:
        print("openai-agents is not installed: pip install 'wrenn[openai-agents]'")
        print("done")
        return
    with backend() as keys:
        asyncio.run(run(keys))
    print("done")


if __name__ == "__main__":
    main()
