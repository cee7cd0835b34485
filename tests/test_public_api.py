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
    "Sandbox", "WrennHostHasSandboxesError",  # lazy and deprecated, but listed in __all__
]  # fmt: skip
OFFICIAL_DEPRECATED = {
    "Sandbox": "Capsule",
    "WrennHostHasSandboxesError": "WrennHostHasCapsulesError",
}
# wrenn.models._generated in the official SDK (PROTOCOL.md §4.1); only some are in wrenn.models there.
OFFICIAL_GENERATED = [
    "CreateCapsuleRequest", "Point", "Range", "Current", "Peaks", "Series", "CreateSnapshotRequest",
    "Type", "ExecRequest", "BackgroundExecResponse", "ProcessEntry", "ProcessListResponse", "Encoding",
    "ExecResponse", "ReadFileRequest", "ListDirRequest", "Type1", "RemoveRequest", "Range1", "Error1",
    "Error", "Event", "Outcome", "Type2", "MakeDirRequest",
]  # fmt: skip
# The official SDK's public modules and the names each defines (sdk-0.3.0-reference.md).
OFFICIAL_MODULES = {
    "wrenn.capsule": ["Capsule"],
    "wrenn.async_capsule": ["AsyncCapsule"],
    "wrenn.commands": [
        "CommandResult", "CommandHandle", "ProcessInfo", "StreamEvent", "StreamStartEvent",
        "StreamStdoutEvent", "StreamStderrEvent", "StreamExitEvent", "StreamErrorEvent",
        "Commands", "AsyncCommands",
    ],
    "wrenn.files": ["Files", "AsyncFiles"],
    "wrenn.pty": ["PtySession", "AsyncPtySession", "PtyEvent", "PtyEventType"],
    "wrenn.client": [
        "WrennClient", "AsyncWrennClient", "CapsulesResource", "AsyncCapsulesResource",
        "SnapshotsResource", "AsyncSnapshotsResource", "EventsResource", "AsyncEventsResource",
    ],
}  # fmt: skip
OFFICIAL_MODELS = [
    "Actor", "Capsule", "CapsuleMetrics", "CapsuleStats", "FileEntry", "ListDirResponse", "MakeDirResponse",
    "MetricPoint", "Resource", "SSEEvent", "Status", "Template", "UsageResponse",
]  # fmt: skip


def test_every_official_name_imports() -> None:
    wrenn = importlib.import_module("wrenn")
    for name in OFFICIAL_TOP_LEVEL:
        assert name in wrenn.__all__, name
        if name not in OFFICIAL_DEPRECATED:
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


# What importing the client classes must not load: each loads on first use. httpcore
# (a pool's code) and wsproto (WebSockets) were ~25 ms of importing the clients (bench/,
# cold import); the resources a client builds on first access (_first_access.py) and
# what only they import (event streams, lifecycle waits, models...) were ~30 ms more.
LOADED_ON_FIRST_USE = [
    "httpcore", "wsproto", "h11",
    *(f"wrenn.{tree}.{module}" for tree in ("_async", "_sync") for module in (
        "capsules", "snapshots", "events", "lease", "_transitions", "_ownership", "_stream",
        "_websocket", "capsule", "commands", "files", "git", "pty", "durable", "code_runner",
    )),
    "wrenn._sse", "wrenn._reconnect", "wrenn._lifecycle", "wrenn._labels", "wrenn._validate",
    "wrenn._models_control", "wrenn._models_data", "wrenn._models_base", "wrenn._process",
    "wrenn._durable", "wrenn._git", "wrenn._netbackend",
]  # fmt: skip


def test_the_client_classes_load_no_transport_websocket_or_resource_code() -> None:
    code = (
        "import sys, wrenn; wrenn.AsyncWrennClient, wrenn.WrennClient; "
        f"print(sorted(m for m in {LOADED_ON_FIRST_USE!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_deprecated_names_in_all_resolve_with_a_warning_each_time() -> None:
    import wrenn

    for old, new in OFFICIAL_DEPRECATED.items():
        assert old in wrenn.__all__ and old in dir(wrenn)
        for _ in range(2):  # not cached: the second access warns again
            with pytest.warns(FutureWarning, match=old):
                assert getattr(wrenn, old) is getattr(wrenn, new)
    namespace: dict[str, object] = {}
    with pytest.warns(FutureWarning):
        exec("from wrenn import *", namespace)
    assert namespace["Sandbox"] is wrenn.Capsule
    assert all(name in namespace for name in wrenn.__all__)


@pytest.mark.parametrize("module_name", sorted(OFFICIAL_MODULES))
def test_official_modules_reexport_our_implementation(module_name: str) -> None:
    import wrenn

    module = importlib.import_module(module_name)
    for name in OFFICIAL_MODULES[module_name]:
        assert name in module.__all__, (module_name, name)
        value = getattr(module, name)
        if name in wrenn.__all__:
            assert value is getattr(wrenn, name), (module_name, name)


def test_official_modules_are_the_classes_capsules_use() -> None:
    from wrenn import _async, _sync, async_capsule, capsule, commands, files, pty

    assert capsule.Capsule is _sync.capsule.Capsule
    assert async_capsule.AsyncCapsule is _async.capsule.AsyncCapsule
    assert commands.Commands is _sync.commands.Commands
    assert commands.AsyncCommands is _async.commands.AsyncCommands
    assert commands.CommandHandle is _sync.commands.CommandHandle
    assert files.Files is _sync.files.Files and files.AsyncFiles is _async.files.AsyncFiles
    assert pty.PtySession is _sync.pty.PtySession
    assert pty.AsyncPtySession is _async.pty.AsyncPtySession


def test_client_module_constants_and_models_as_the_official_one() -> None:
    import wrenn.models
    from wrenn import _config, client

    assert client.DEFAULT_BASE_URL == _config.DEFAULT_BASE_URL == "https://app.wrenn.dev/api"
    assert client.DEFAULT_PROXY_DOMAIN == _config.DEFAULT_PROXY_DOMAIN == "wrenn.dev"
    assert (client.ENV_API_KEY, client.ENV_BASE_URL, client.ENV_PROXY_DOMAIN) == (
        "WRENN_API_KEY",
        "WRENN_BASE_URL",
        "WRENN_PROXY_DOMAIN",
    )
    assert (_config.ENV_API_KEY, _config.ENV_BASE_URL, _config.ENV_PROXY_DOMAIN) == (
        "WRENN_API_KEY",
        "WRENN_BASE_URL",
        "WRENN_PROXY_DOMAIN",
    )
    assert client.CapsuleModel is wrenn.models.Capsule
    for name in ("CapsuleMetrics", "CapsuleStats", "SSEEvent", "Template", "UsageResponse"):
        assert getattr(client, name) is getattr(wrenn.models, name), name
    assert client.handle_response is importlib.import_module("wrenn.exceptions").handle_response


def test_generated_model_names_import_from_both_paths() -> None:
    models = importlib.import_module("wrenn.models")
    generated = importlib.import_module("wrenn.models._generated")
    for name in [*OFFICIAL_MODELS, *OFFICIAL_GENERATED]:
        assert getattr(models, name) is getattr(generated, name), name
        assert name in models.__all__, name
    assert models.Encoding.base64 == "base64" and models.Outcome.success == "success"
    assert models.Type1 is models.FileType and models.Range1 is models.MetricsRange
