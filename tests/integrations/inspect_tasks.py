"""A tiny Inspect task whose samples work in their capsule, driven by a scripted mock model.

The model (Inspect's ``mockllm/model`` with scripted outputs) asks for one ``bash`` tool
call, then answers with the tool's output: no model is called and no network is used.
The solver and the scorer also use the sandbox directly (text and bytes files, exec
with stdin, env and cwd), and each sample has Inspect's own ``files`` and ``setup``.
"""

from __future__ import annotations

from typing import Any

import sniffio
from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.model import (
    ChatMessageTool,
    GenerateConfig,
    Model,
    ModelOutput,
    ModelUsage,
    get_model,
)
from inspect_ai.scorer import Score, Target, accuracy, scorer
from inspect_ai.solver import Generate, Solver, TaskState, generate, solver, use_tools
from inspect_ai.tool import bash
from inspect_ai.util import sandbox

from wrenn.integrations.inspect import WrennSandboxEnvironment

WORDS = ["hello", "capsule", "trio"]


def _scripted(messages: list[Any], tools: Any, tool_choice: Any, config: Any) -> ModelOutput:
    last = messages[-1]
    if isinstance(last, ChatMessageTool):
        output = ModelOutput.from_content(model="mockllm", content=str(last.text).strip())
    else:
        output = ModelOutput.for_tool_call(
            model="mockllm",
            tool_name="bash",
            tool_arguments={"command": "tr a-z A-Z < input.txt | tee shouted.txt"},
        )
    # Usage given up front: mockllm would otherwise count tokens with tiktoken, which
    # downloads its encodings.
    output.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)
    return output


def scripted_model() -> Model:
    return get_model("mockllm/model", custom_outputs=_scripted)


@solver
def prepare() -> Solver:
    async def solve(state: TaskState, generate: Generate) -> TaskState:
        box = sandbox()
        await box.write_file("input.txt", state.input_text)
        await box.write_file("data/raw.bin", bytes(range(256)))
        piped = await box.exec(
            ["sh", "-c", 'cat; printf " %s" "$GREETING"; printf " %s" "$(pwd)"'],
            input="stdin-text",
            env={"GREETING": "hi"},
            cwd="data",
        )
        state.metadata["piped"] = piped.stdout
        state.metadata["backend"] = sniffio.current_async_library()
        state.metadata["capsule_id"] = box.as_type(WrennSandboxEnvironment).capsule.capsule_id
        return state

    return solve


@scorer(metrics=[accuracy()])
def shouted() -> Any:
    async def score(state: TaskState, target: Target) -> Score:
        box = sandbox()
        text = await box.read_file("shouted.txt")
        raw = await box.read_file("data/raw.bin", text=False)
        given = await box.read_file("given/word.txt")
        set_up = await box.read_file("setup.txt")
        answer = state.output.completion
        ok = (
            text.strip() == target.text
            and answer == target.text
            and raw == bytes(range(256))
            and given == state.input_text
            and set_up == "set-up\n"
        )
        return Score(
            value=1 if ok else 0,
            answer=answer,
            metadata={key: state.metadata[key] for key in ("piped", "capsule_id", "backend")},
        )

    return score


@task
def shout(sandbox_spec: Any = "wrenn") -> Task:
    return Task(
        dataset=[
            Sample(
                input=word,
                target=word.upper(),
                id=word,
                # Inspect's own sample set-up goes through the provider too.
                files={"given/word.txt": word},
                setup="echo set-up > setup.txt",
            )
            for word in WORDS
        ],
        solver=[prepare(), use_tools(bash(timeout=60)), generate()],
        scorer=shouted(),
        sandbox=sandbox_spec,
        config=GenerateConfig(max_tool_output=4096),
    )
