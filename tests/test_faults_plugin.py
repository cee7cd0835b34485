"""The pytest plugin's ``wrenn_faults``, run as a user runs it: the README's fault tests
pass as written, and no fault outlives the test that set it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parent.parent / "README.md"

LEAKS = """
import pytest

def test_leaves_faults_behind(wrenn_faults):
    wrenn_faults.respond("GET /v1/capsules", 503, times=None)
    wrenn_faults.slow_transition("pause", None)

def test_sets_one_without_the_fixture(wrenn_server):
    wrenn_server.faults.respond("GET /v1/capsules", 503, times=None)

def test_the_next_test_sees_none(wrenn_server, wrenn_client):
    assert wrenn_server.faults.rules == ()
    assert isinstance(wrenn_client.capsules.list(), list)

def test_a_capsule_fixture_is_destroyed_despite_a_fault(wrenn_faults, wrenn_capsule):
    wrenn_faults.respond("DELETE /v1/capsules/{id}", 503, times=None)

def test_that_capsule_is_gone(wrenn_client):
    live = [c for c in wrenn_client.capsules.list() if str(c.status.value) != "stopped"]
    assert live == []
"""


def _readme_fault_tests() -> str:
    text = README.read_text("utf-8")
    match = re.search(r"^### Rehearsing failures.*?\n(.*?)(?=^##)", text, re.S | re.M)
    assert match is not None, "README has no 'Rehearsing failures' part"
    blocks = re.findall(r"```python\n(.*?)```", match.group(1), re.S)
    assert len(blocks) == 1
    return str(blocks[0])


def test_the_readme_fault_tests_pass(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_readme_faults=_readme_fault_tests())
    result = pytester.runpytest_subprocess("-p", "anyio", timeout=300)
    result.assert_outcomes(passed=2)


def test_faults_never_leak_between_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_leaks=LEAKS)
    result = pytester.runpytest_subprocess("-p", "anyio", timeout=300)
    result.assert_outcomes(passed=5)


def test_wrenn_faults_is_skipped_against_the_platform(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WRENN_API_KEY", "wrn_" + "0" * 32)
    pytester.makepyfile(test_hosted="def test_x(wrenn_faults):\n    pass\n")
    result = pytester.runpytest_subprocess("--wrenn-target=hosted", "-rs", timeout=120)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*wrenn_faults needs the embedded server*"])
