"""Building git's command lines: options stay options, names and paths stay arguments."""

from __future__ import annotations

import pytest

from wrenn import _git_commands as git
from wrenn._exceptions import GitAuthError, GitCommandError
from wrenn._git import PASSWORD_ENV, USERNAME_ENV, command_error


def test_clone_puts_the_url_and_destination_after_the_separator() -> None:
    argv = git.clone_argv("https://example.com/r.git", "dir", branch="dev", depth=1)
    assert argv == [
        "clone",
        "--branch",
        "dev",
        "--depth",
        "1",
        "--",
        "https://example.com/r.git",
        "dir",
    ]


def test_clone_stores_credentials_only_when_told_and_only_both() -> None:
    argv = git.clone_argv(
        "https://example.com/r.git",
        None,
        branch=None,
        depth=None,
        store_credentials=True,
        username="a",
        password="p@ss",
    )
    assert argv == ["clone", "--", "https://a:p%40ss@example.com/r.git"]
    with pytest.raises(ValueError, match="needs username and password"):
        git.clone_argv(
            "https://example.com/r.git", None, branch=None, depth=None, store_credentials=True
        )
    with pytest.raises(ValueError, match="without a password"):
        git.credentials("a", None)
    with pytest.raises(ValueError, match="without a username"):
        git.credentials(None, "p")
    with pytest.raises(ValueError, match="non-empty"):
        git.credentials("", "p")
    assert git.credentials(None, None) is None


def test_credentials_reach_git_through_the_environment_only() -> None:
    options, secrets = git.credential_options(("bob", "s3cret"))
    assert options[:2] == ["-c", "credential.helper="]
    assert not any("bob" in o or "s3cret" in o for o in options)
    assert secrets == {USERNAME_ENV: "bob", PASSWORD_ENV: "s3cret"}
    script = git.credential_approve_argv("https", "example.com")
    assert script[-2:] == ["https", "example.com"]
    assert git.environment({"A": "b"}) == {"GIT_TERMINAL_PROMPT": "0", "A": "b"}


def test_names_that_git_would_read_as_options_are_refused() -> None:
    for build in (
        lambda: git.push_argv("--exec=x", None, force=False, set_upstream=False),
        lambda: git.pull_argv("origin", "-b", rebase=False, ff_only=False),
        lambda: git.create_branch_argv("-D", None),
        lambda: git.reset_argv(None, "--hard", None),
        lambda: git.get_config_argv("-l", "local"),
    ):
        with pytest.raises(ValueError, match="may not start with '-'"):
            build()


def test_paths_follow_the_separator_and_bad_choices_fail() -> None:
    assert git.add_argv("-x", all=False) == ["add", "--", "-x"]
    assert git.add_argv(None, all=True) == ["add", "-A", "--"]
    assert git.restore_argv(["a", "b"], staged=True, worktree=False, source="HEAD") == [
        "restore",
        "--staged",
        "--source=HEAD",
        "--",
        "a",
        "b",
    ]
    assert git.reset_argv("hard", "HEAD~1", None) == ["reset", "--hard", "HEAD~1"]
    with pytest.raises(ValueError):
        git.add_argv(None, all=False)
    with pytest.raises(TypeError):
        git.add_argv(["a", ""], all=False)
    with pytest.raises(ValueError, match="mode must be one of"):
        git.reset_argv("hardest", None, None)
    with pytest.raises(ValueError, match="scope must be one of"):
        git.set_config_argv("user.name", "x", "worktree")
    with pytest.raises(TypeError):
        git.set_config_argv("user.name", 1, "local")  # type: ignore[arg-type]


def test_a_failure_names_the_command_and_gits_last_line() -> None:
    error = command_error("push", 128, "remote: hi\nfatal: Authentication failed for 'x'\n")
    assert isinstance(error, GitAuthError)
    assert str(error).endswith("failed with exit code 128: fatal: Authentication failed for 'x'")
    plain = command_error("commit", 1, "")
    assert isinstance(plain, GitCommandError) and "no error output" in str(plain)
