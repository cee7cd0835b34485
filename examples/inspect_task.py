"""An Inspect eval whose samples each run in their own Wrenn capsule (`sandbox="wrenn"`).

Needs `pip install 'wrenn[inspect]'` (Python 3.11+). The "model" is Inspect's mockllm with
a script: it asks for one bash call and answers with the tool's output, so the example
runs offline; put a real model name in `model=` to let one drive the capsule instead.
"""

from __future__ import annotations

import importlib.util
import tempfile
from typing import Any

from _backend import backend


def main() -> None:
    if importlib.util.find_spec("inspect_ai") is None:
        print("inspect-ai is not installed: pip install 'wrenn[inspect]' (Python 3.11+)")
        print("done")
        return

    from inspect_ai import Task, eval
    from inspect_ai.dataset import Sample
    from inspect_ai.model import ChatMessageTool, ModelOutput, ModelUsage, get_model
    from inspect_ai.scorer import includes
    from inspect_ai.solver import TaskState, generate, solver, use_tools
    from inspect_ai.tool import bash
    from inspect_ai.util import SandboxEnvironmentSpec, sandbox

    from wrenn.integrations.inspect import WrennSandboxConfig

    @solver
    def plant_a_file() -> Any:
        async def solve(state: TaskState, generate: Any) -> TaskState:
            # Each sample's own capsule: write a file the model will work on.
            await sandbox().write_file("word.txt", state.input_text)
            return state

        return solve

    def script(messages: list[Any], *_: Any) -> ModelOutput:
        if isinstance(messages[-1], ChatMessageTool):  # the tool answered: say what it said
            output = ModelOutput.from_content("mockllm", messages[-1].text.strip())
        else:
            output = ModelOutput.for_tool_call(
                "mockllm", "bash", {"command": "rev word.txt | tr a-z A-Z"}
            )
        output.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)
        return output

    with backend() as keys, tempfile.TemporaryDirectory() as logs:
        # Without keys (the platform), WRENN_API_KEY / WRENN_BASE_URL are used.
        config = WrennSandboxConfig(**keys)
        task = Task(
            dataset=[Sample(input=w, target=w[::-1].upper()) for w in ("capsule", "trio")],
            solver=[plant_a_file(), use_tools(bash(timeout=60)), generate()],
            scorer=includes(),
            sandbox=SandboxEnvironmentSpec("wrenn", config),
        )
        [log] = eval(
            task,
            model=get_model("mockllm/model", custom_outputs=script),
            display="none",
            log_dir=logs,
            max_sandboxes=2,
        )
        assert log.status == "success", log.error
        assert log.results is not None and log.samples is not None
        for sample in log.samples:
            print(f"{sample.input!r} -> {sample.output.completion!r}")
        accuracy = log.results.scores[0].metrics["accuracy"].value
        print(f"accuracy: {accuracy:.2f} over {len(log.samples)} samples, one capsule each")
    print("done")


if __name__ == "__main__":
    main()
