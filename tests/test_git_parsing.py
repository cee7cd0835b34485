"""Parsing git's NUL-separated output, and keeping credentials out of messages."""

from __future__ import annotations

import pytest

from wrenn._git import (
    ENV_CREDENTIAL_HELPER,
    FileStatus,
    is_auth_failure,
    parse_branches,
    parse_status,
    redact,
    url_with_credentials,
)


def test_status_with_odd_paths_renames_and_tracking() -> None:
    output = (
        "## main...origin/main [ahead 2, behind 1]\0"
        " M a file with spaces.txt\0"
        "?? ü-ñ.txt\0"
        "R  new name\0old name\0"
        "UU conflict.txt\0"
        "A  tab\there\0"
    )
    status = parse_status(output)
    assert (status.branch, status.upstream, status.ahead, status.behind) == (
        "main",
        "origin/main",
        2,
        1,
    )
    assert [f.path for f in status.files] == [
        "a file with spaces.txt",
        "ü-ñ.txt",
        "new name",
        "conflict.txt",
        "tab\there",
    ]
    assert status.files[2].renamed_from == "old name"
    assert [f.status for f in status.files] == [
        "modified",
        "untracked",
        "renamed",
        "conflict",
        "added",
    ]
    assert (
        status.has_staged and status.has_untracked and status.has_conflicts and not status.is_clean
    )


def test_detached_and_fresh_repositories() -> None:
    detached = parse_status("## HEAD (no branch)\0")
    assert detached.detached and detached.branch is None
    fresh = parse_status("## No commits yet on main\0")
    assert fresh.branch == "main" and fresh.is_clean


def test_branches() -> None:
    branches = parse_branches("*\0main\0 \0feature/x\0")
    assert [(b.name, b.is_current) for b in branches] == [("main", True), ("feature/x", False)]


def test_file_status_staged() -> None:
    assert FileStatus("x", "M", " ").staged
    assert not FileStatus("x", " ", "M").staged
    assert not FileStatus("x", "?", "?").staged


def test_credentials_never_survive_in_messages() -> None:
    text = "fatal: unable to access 'https://bob:p%40ss@example.com/r.git': p@ss rejected"
    cleaned = redact(text, ["bob", "p@ss"])
    assert "p@ss" not in cleaned and "p%40ss" not in cleaned and "bob" not in cleaned
    assert is_auth_failure("fatal: Authentication failed for 'https://example.com/'")
    assert is_auth_failure(
        "fatal: could not read Username for 'https://github.com': terminal prompts disabled"
    )
    assert not is_auth_failure("fatal: not a git repository")


def test_embedded_credentials_are_percent_encoded() -> None:
    url = url_with_credentials("https://example.com/r.git", "a@b", "p:/@")
    assert url == "https://a%40b:p%3A%2F%40@example.com/r.git"
    with pytest.raises(ValueError):
        url_with_credentials("git@example.com:r.git", "a", "b")


def test_credential_helper_holds_no_secret() -> None:
    assert "WRENN_GIT_PASSWORD" in ENV_CREDENTIAL_HELPER
