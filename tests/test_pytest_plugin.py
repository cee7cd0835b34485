"""The pytest plugin (wrenn.pytest_plugin), run as a user runs it: pytest on a test file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

SUITE = """
import pytest

@pytest.fixture
def anyio_backend():
    return "asyncio"

def test_client(wrenn_client, wrenn_target):
    assert wrenn_target == "local"
    assert isinstance(wrenn_client.capsules.list(), list)

def test_server(wrenn_server, wrenn_credentials):
    assert wrenn_credentials == {"api_key": wrenn_server.api_key, "base_url": wrenn_server.base_url}

CREATED = []

@pytest.mark.wrenn_capsule(template="minimal")
def test_capsule(wrenn_capsule):
    CREATED.append(wrenn_capsule.capsule_id)
    assert wrenn_capsule.get_info().template == "minimal"
    assert wrenn_capsule.commands.run("echo hi").stdout == "hi\\n"

def test_capsule_is_destroyed_even_after_a_failure(wrenn_capsule):
    CREATED.append(wrenn_capsule.capsule_id)
    assert False, "fails on purpose"

def test_the_capsules_are_gone(wrenn_client):
    assert len(CREATED) == 2
    live = {c.id for c in wrenn_client.capsules.list() if str(c.status.value) != "stopped"}
    assert not live & set(CREATED)

@pytest.mark.anyio
async def test_async(wrenn_async_client, wrenn_async_capsule):
    info = await wrenn_async_client.capsules.get(wrenn_async_capsule.capsule_id)
    assert str(info.status.value) == "running"
    assert (await wrenn_async_capsule.commands.run("echo async")).stdout == "async\\n"

@pytest.mark.wrenn_hosted
def test_only_hosted():
    pass

@pytest.mark.wrenn_local
def test_only_local():
    pass
"""


def test_local_target(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess("-p", "anyio", "-rs", timeout=300)
    result.assert_outcomes(passed=6, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*fails on purpose*", "*runs only with --wrenn-target=hosted*"])


def test_hosted_target_without_a_key_skips_with_a_reason(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WRENN_API_KEY", raising=False)
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess("--wrenn-target=hosted", "-rs", timeout=300)
    # Everything that needs the platform is skipped; nothing starts a local server.
    result.assert_outcomes(skipped=8, passed=0, failed=0)
    result.stdout.fnmatch_lines(
        ["*--wrenn-target=hosted needs WRENN_API_KEY*", "*runs only against the embedded server*"]
    )


def test_a_suite_without_the_fixtures_is_unchanged(pytester: pytest.Pytester) -> None:
    # Fixtures of the same plain names as this repo's own conftest are the user's, not ours.
    pytester.makeconftest(
        """
import pytest

@pytest.fixture
def local_server():
    return "mine"
"""
    )
    pytester.makepyfile(
        test_plain="""
def test_mine(local_server):
    assert local_server == "mine"
"""
    )
    result = pytester.runpytest_subprocess("-W", "error", "--strict-markers")
    result.assert_outcomes(passed=1)
    assert "wrenn" not in result.stdout.str().replace("wrenn-", "")


def test_opt_in_with_dash_p_when_autoload_is_off(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(
        test_opt_in="""
def test_target(wrenn_target):
    assert wrenn_target == "local"
"""
    )
    assert pytester.runpytest_subprocess().ret != 0  # not loaded: the fixture is unknown
    result = pytester.runpytest_subprocess("-p", "wrenn.pytest_plugin")
    result.assert_outcomes(passed=1)


def test_bad_target_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bad="def test_x(wrenn_target):\n    pass\n")
    result = pytester.runpytest_subprocess("--wrenn-target=elsewhere")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_the_readme_example_runs(pytester: pytest.Pytester) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text("utf-8")
    section = readme[readme.index("## Testing your code") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    pytester.makepyfile(test_readme=match.group(1))
    result = pytester.runpytest_subprocess("-p", "anyio", timeout=300)
    assert result.ret == 0, result.stdout.str()[-3000:]
    assert result.parseoutcomes()["passed"] >= 4
