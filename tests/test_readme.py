"""The README's own examples run as written: the quick start, the lifecycle and the
migration example, each in a fresh interpreter against the embedded server with
transitions that take time (as on the platform), so the waiting they rely on is real."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from wrenn.local import LocalServer

README = Path(__file__).resolve().parent.parent / "README.md"
SECTIONS = ("Quick start", "Migrating from the official SDK")


def _blocks() -> list[tuple[str, str]]:
    text = README.read_text("utf-8")
    found = []
    for title in SECTIONS:
        match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.S | re.M)
        assert match is not None, f"README has no section {title!r}"
        for index, code in enumerate(re.findall(r"```python\n(.*?)```", match.group(1), re.S)):
            found.append((f"{title} #{index + 1}", code))
    return found


BLOCKS = _blocks()


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(transition_delay=0.2) as srv:
        yield srv


def test_the_sections_have_examples() -> None:
    assert {name.split(" #")[0] for name, _ in BLOCKS} == set(SECTIONS)


@pytest.mark.parametrize(("name", "code"), BLOCKS, ids=[name for name, _ in BLOCKS])
def test_readme_example_runs(server: LocalServer, name: str, code: str) -> None:
    # The examples show a placeholder key; the environment carries the real one.
    code = code.replace('api_key="wrn_..."', "")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WRENN_")}
    env.update(WRENN_API_KEY=server.api_key, WRENN_BASE_URL=server.base_url)
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stderr[-4000:]}"
