"""Developer tasks. `nox -l` lists them; `nox -s tests-3.12` runs one."""

from __future__ import annotations

import os
import shutil

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["sync_check", "lint", "typecheck", "tests"]

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
# build_sync.py must run on this version: unasync's output depends on the tokenizer.
GENERATOR_PYTHON = "3.11"
DEV = [
    "pytest>=8",
    "pytest-cov>=5",
    "trio>=0.27",
    "unasync==0.6.0",
    "setuptools",
    "ruff==0.17.6",
    "pyyaml>=6",
    "jsonschema>=4.18",
    # The tests' own WebSocket client (the SDK speaks wsproto directly).
    "httpx-ws>=0.9.0,<0.10",
    # tests/integrations/test_tracing.py: the in-memory span exporter.
    "opentelemetry-sdk>=1.27",
]


# What runs again on the microVM backend: the data plane (commands, streams, files, terminals) and the
# lifecycle, on asyncio, trio and the blocking client.
MICROVM_SUITES = (
    "tests/_async/test_data_plane.py",
    "tests/_sync/test_data_plane.py",
    "tests/_async/test_lifecycle_local.py",
    "tests/_sync/test_lifecycle_local.py",
)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole suite on one Python: unit, sync/async parity, end-to-end on wrenn.local,
    the `wrenn` command line and the pytest plugin."""
    # The inspect extra installs inspect-ai only on Python 3.11+ (its floor); on 3.10 its
    # tests skip themselves.
    session.install("-e", ".[local-code-runner,cli,pytest,inspect,openai-agents,otel]", *DEV)
    coverage = []
    if session.python == GENERATOR_PYTHON:
        # Line coverage of src/wrenn is measured once, and must stay at 90% or more.
        coverage = ["--cov=wrenn", "--cov-report=term-missing:skip-covered", "--cov-fail-under=90"]
    else:
        # Tests that boot QEMU guests run once, here with coverage: the host side of the
        # VM engine is the same code on every Python, and its unit tests still run.
        coverage = ["-m", "not vm"]
    session.run("pytest", "-q", *coverage, *session.posargs)
    if (
        session.python == GENERATOR_PYTHON
        and not session.posargs
        and shutil.which("qemu-system-x86_64")
    ):
        # The SDK's end-to-end suites once more, with every capsule a microVM guest
        # (tests/conftest.py's local_server reads WRENN_TEST_ISOLATION).
        session.run("pytest", "-q", *MICROVM_SUITES, env={"WRENN_TEST_ISOLATION": "microvm"})


@nox.session(python=GENERATOR_PYTHON)
def lint(session: nox.Session) -> None:
    """ruff lint and format check (generated code included: it is formatted on generation)."""
    session.install("ruff==0.17.6")
    paths = ["src", "tests", "build_sync.py", "sync_generator", "noxfile.py", "bench", "examples"]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


@nox.session(python=GENERATOR_PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package, both trees."""
    session.install("-e", ".[local-code-runner,cli,pytest]", "mypy>=1.13", "trio>=0.27")
    session.run("mypy", "--strict", "src/wrenn")


@nox.session(python=GENERATOR_PYTHON)
def sync_check(session: nox.Session) -> None:
    """Fail if src/wrenn/_sync or tests/_sync differ from a fresh build_sync.py run."""
    session.install("unasync==0.6.0", "setuptools", "ruff==0.17.6")
    session.run("python", "build_sync.py", "--check")


@nox.session(python=GENERATOR_PYTHON)
def sync(session: nox.Session) -> None:
    """Regenerate the sync twins from the async sources."""
    session.install("unasync==0.6.0", "setuptools", "ruff==0.17.6")
    session.run("python", "build_sync.py")


@nox.session(python=GENERATOR_PYTHON)
def demo(session: nox.Session) -> None:
    """Run the quick start against the embedded local server."""
    session.install("-e", ".[local]")
    session.run("python", "examples/quickstart.py")


@nox.session(python=GENERATOR_PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks against the official SDK 0.3.0 and raw httpx; writes bench/RESULTS.md.

    `nox -s bench -- --quick` takes a minute or two; other arguments go to bench/run.py.
    """
    session.install("-e", ".[local]", "trio>=0.27")
    venvs = {
        # The official package is also named `wrenn`, so it gets its own interpreter. It
        # declares Python >= 3.13 but runs on 3.11.
        "bench/.venv-official": ["--ignore-requires-python", "wrenn==0.3.0", "trio>=0.27"],
        # Only what `pip install wrenn` brings: cold imports are timed here, because the
        # session's venv also holds uvicorn, whose click makes `import httpx` heavier.
        "bench/.venv-ours-min": ["-e", "."],
    }
    for venv, packages in venvs.items():
        python = os.path.join(venv, "bin", "python")
        if not os.path.exists(python):
            session.run("python", "-m", "venv", venv)
        pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        session.run(*pip, *packages, external=True)
    session.run("python", "bench/run.py", *session.posargs)
