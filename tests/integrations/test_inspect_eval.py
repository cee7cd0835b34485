"""A real Inspect eval with ``sandbox="wrenn"``: each sample runs in its own capsule on
wrenn.local, under asyncio and under trio, and every capsule is gone afterwards."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("inspect_ai", reason="inspect-ai is not installed (needs Python 3.11+)")

from inspect_ai import eval as inspect_eval
from inspect_ai.util import SandboxEnvironmentSpec

from wrenn.integrations.inspect import WrennSandboxConfig, WrennSandboxEnvironment
from wrenn.local import LocalServer

from .inspect_tasks import WORDS, scripted_model, shout

# The suite turns warnings into errors. These two come from inspect-ai itself (an eval on
# its own "local" sandbox shows them too): a deprecated tenacity argument, and a memory
# stream it leaves unclosed (the SDK uses no anyio memory streams). The stream's warning
# fires when the garbage collector gets to it, so `restore_process_state` collects before
# the test ends, while the filter still applies; otherwise it lands in a later test.
pytestmark = [
    pytest.mark.filterwarnings("ignore:The 'initial' parameter is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Unclosed <MemoryObjectReceiveStream:ResourceWarning"),
]


@pytest.fixture(autouse=True)
def restore_process_state() -> Iterator[None]:
    """An eval installs Inspect's log handler on the root logger (and sets its level) for
    the rest of the process; put the root logger back so later tests see it as it was, and
    collect what the eval left behind (see the filters above)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    gc.collect()


@pytest.fixture
def wrenn_env(local_server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> LocalServer:
    monkeypatch.setenv("WRENN_API_KEY", local_server.api_key)
    monkeypatch.setenv("WRENN_BASE_URL", local_server.base_url)
    return local_server


def _capsules(server: LocalServer) -> dict[str, str]:
    with server.client() as client:
        return {c.id: str(c.status.value if c.status else "?") for c in client.capsules.list()}


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_an_eval_runs_each_sample_in_its_own_capsule(
    backend: str, wrenn_env: LocalServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("INSPECT_ASYNC_BACKEND", backend)
    before = _capsules(wrenn_env)
    [log] = inspect_eval(
        shout(),
        model=scripted_model(),
        display="none",
        log_dir=str(tmp_path),
        max_sandboxes=2,
    )
    assert log.status == "success", log.error
    assert log.results is not None
    assert log.results.scores[0].metrics["accuracy"].value == 1.0
    assert log.samples is not None and len(log.samples) == len(WORDS)
    ids = set()
    for sample in log.samples:
        assert sample.error is None
        [score] = sample.scores.values() if sample.scores else [None]
        assert score is not None and score.value == 1, score
        assert score.metadata is not None
        # stdin, env and a relative cwd (under the capsule's working directory) all held.
        piped = score.metadata["piped"]
        assert piped.startswith("stdin-text hi /") and piped.endswith("/data"), piped
        assert score.metadata["backend"] == backend
        ids.add(score.metadata["capsule_id"])
    assert len(ids) == len(WORDS)  # one capsule per sample
    after = _capsules(wrenn_env)
    leftover = {i: s for i, s in after.items() if i in ids and s != "stopped"}
    assert leftover == {}, leftover
    assert set(after) - set(before) <= ids  # and no capsule besides the samples'


def test_a_config_object_selects_how_capsules_are_made(
    wrenn_env: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The config comes from the task (not the environment): key, URL, size, working dir.
    monkeypatch.delenv("WRENN_API_KEY")
    monkeypatch.delenv("WRENN_BASE_URL")
    config = WrennSandboxConfig(
        api_key=wrenn_env.api_key,
        base_url=wrenn_env.base_url,
        vcpus=1,
        memory_mb=512,
        working_dir="/tmp/work",
    )
    [log] = inspect_eval(
        shout(SandboxEnvironmentSpec("wrenn", config)),
        model=scripted_model(),
        display="none",
        log_dir=str(tmp_path),
        limit=1,
    )
    assert log.status == "success", log.error
    assert log.samples is not None
    [score] = log.samples[0].scores.values() if log.samples[0].scores else [None]
    assert score is not None and score.value == 1
    assert score.metadata is not None and score.metadata["piped"] == "stdin-text hi /tmp/work/data"
    # The key never reaches the eval log.
    text = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file())
    assert wrenn_env.api_key not in text


def test_max_sandboxes_bounds_the_capsules_alive_at_once(
    wrenn_env: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alive, peak = 0, 0
    init, cleanup = WrennSandboxEnvironment.sample_init, WrennSandboxEnvironment.sample_cleanup

    async def counting_init(*args: Any) -> Any:
        nonlocal alive, peak
        environments = await init(*args)
        alive += 1
        peak = max(peak, alive)
        await anyio.sleep(0.2)  # give another sample the chance to overlap, were it allowed
        return environments

    async def counting_cleanup(*args: Any) -> None:
        nonlocal alive
        await cleanup(*args)
        alive -= 1

    monkeypatch.setattr(WrennSandboxEnvironment, "sample_init", counting_init)
    monkeypatch.setattr(WrennSandboxEnvironment, "sample_cleanup", counting_cleanup)
    [log] = inspect_eval(
        shout(), model=scripted_model(), display="none", log_dir=str(tmp_path), max_sandboxes=1
    )
    assert log.status == "success", log.error
    assert (peak, alive) == (1, 0)
