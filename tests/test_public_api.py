"""The official SDK's import surface is all here, and deprecated names still work, with a warning."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

OFFICIAL_TOP_LEVEL = [
    "AsyncCapsule", "Capsule", "AsyncWrennClient", "WrennClient",
    "AsyncGit", "Git", "FileStatus", "GitBranch", "GitStatus", "GitError", "GitCommandError", "GitAuthError",
    "CommandHandle", "CommandResult", "ProcessInfo", "StreamEvent", "StreamStartEvent", "StreamStdoutEvent",
    "StreamStderrEvent", "StreamExitEvent", "StreamErrorEvent",
    "FileEntry", "PtySession", "AsyncPtySession", "PtyEvent", "PtyEventType",
    "WrennError", "WrennValidationError", "WrennAuthenticationError", "WrennForbiddenError",
    "WrennNotFoundError", "WrennConflictError", "WrennHostHasCapsulesError", "WrennHostUnavailableError",
    "WrennAgentError", "WrennInternalError",
]  # fmt: skip
OFFICIAL_MODELS = [
    "Actor", "Capsule", "CapsuleMetrics", "CapsuleStats", "FileEntry", "ListDirResponse", "MakeDirResponse",
    "MetricPoint", "Resource", "SSEEvent", "Status", "Template", "UsageResponse",
]  # fmt: skip


def test_every_official_name_imports() -> None:
    wrenn = importlib.import_module("wrenn")
    for name in OFFICIAL_TOP_LEVEL:
        assert name in wrenn.__all__, name
        assert getattr(wrenn, name) is not None
    models = importlib.import_module("wrenn.models")
    for name in OFFICIAL_MODELS:
        assert name in models.__all__, name
    assert models.Status.running == "running"
    client = importlib.import_module("wrenn.client")
    assert client.WrennClient is wrenn.WrennClient
    exceptions = importlib.import_module("wrenn.exceptions")
    assert exceptions.GitError is wrenn.GitError
    assert callable(exceptions.handle_response)
    assert isinstance(wrenn.__version__, str)


def test_deprecated_aliases_warn() -> None:
    import wrenn
    import wrenn.sandbox

    with pytest.warns(FutureWarning):
        assert wrenn.Sandbox is wrenn.Capsule
    with pytest.warns(FutureWarning):
        assert wrenn.WrennHostHasSandboxesError is wrenn.WrennHostHasCapsulesError
    with pytest.warns(FutureWarning):
        assert wrenn.sandbox.Sandbox is wrenn.Capsule


def test_code_runner_surface() -> None:
    runner = importlib.import_module("wrenn.code_runner")
    assert sorted(runner.__all__) == sorted(
        ["AsyncCapsule", "Capsule", "DEFAULT_KERNEL", "DEFAULT_TEMPLATE", "Execution",
         "ExecutionError", "Logs", "Result", "Sandbox"]
    )  # fmt: skip
    assert (runner.DEFAULT_TEMPLATE, runner.DEFAULT_KERNEL) == ("code-runner-beta", "wrenn")
    assert issubclass(runner.Capsule, importlib.import_module("wrenn").Capsule)
    assert issubclass(runner.AsyncCapsule, importlib.import_module("wrenn").AsyncCapsule)
    for module, names in {
        "capsule": ["Capsule", "DEFAULT_KERNEL", "DEFAULT_TEMPLATE"],
        "async_capsule": ["AsyncCapsule", "DEFAULT_KERNEL", "DEFAULT_TEMPLATE"],
        "models": ["Execution", "ExecutionError", "Logs", "Result"],
    }.items():
        sub = importlib.import_module(f"wrenn.code_runner.{module}")
        assert all(getattr(sub, name) is getattr(runner, name) for name in names)
    with pytest.warns(FutureWarning):
        assert runner.Sandbox is runner.Capsule


def test_code_interpreter_alias_warns_once_on_import() -> None:
    code = (
        "import warnings; warnings.simplefilter('always'); "
        "import wrenn.code_interpreter as ci, wrenn.code_interpreter.models, "
        "wrenn.code_interpreter.capsule, wrenn.code_interpreter.async_capsule; "
        "import wrenn.code_runner as cr; "
        "assert ci.Capsule is cr.Capsule and ci.Execution is cr.Execution; "
        "assert 'DEFAULT_KERNEL' not in ci.__all__"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("FutureWarning") == 1
    assert "wrenn.code_runner" in out.stderr


def test_import_is_lazy() -> None:
    code = "import sys, wrenn; print(sorted(m for m in ('httpx', 'msgspec', 'anyio') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
