"""The command line, run as a person runs it: subprocesses against an embedded server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from wrenn.local import LocalServer

TIMEOUT = 120  # seconds any one CLI run may take


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


class Cli:
    """Runs ``python -m wrenn ...`` with the server's address and key in the environment."""

    def __init__(self, server: LocalServer) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("WRENN_")}
        self.env.update(WRENN_BASE_URL=server.base_url, WRENN_API_KEY=server.api_key, COLUMNS="200")

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, input: bytes | None = None
    ) -> Done:
        done = subprocess.run(
            [sys.executable, "-m", "wrenn", *args],
            env={**self.env, **(env or {})},
            input=input,
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        )
        return Done(
            done.returncode,
            done.stdout.decode(errors="replace"),
            done.stderr.decode(errors="replace"),
        )

    def ok(self, *args: str, **kwargs: Any) -> Done:
        done = self(*args, **kwargs)
        assert done.returncode == 0, (args, done.returncode, done.stderr[-2000:])
        return done


@pytest.fixture(scope="session")
def cli(local_server: LocalServer) -> Cli:
    return Cli(local_server)


@pytest.fixture
def capsule_id(cli: Cli) -> Iterator[str]:
    """A running capsule made by the CLI, destroyed after the test whatever happens."""
    capsule = cli.ok("capsules", "create", "-q").stdout.strip()
    try:
        yield capsule
    finally:
        cli("capsules", "destroy", capsule)
