"""Git inside a capsule: the command lines, built and checked the same way for both clients.

Each builder checks its arguments and returns git's argv (without the leading ``git``);
``_async/git.py`` runs it through the capsule's commands and hands the output to the
parsers of ``_git.py``. Names that git could read as options (a leading ``-``) are
refused, and paths always follow ``--``. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._constants import DEFAULT_COMMAND_TIMEOUT
from ._git import ENV_CREDENTIAL_HELPER, PASSWORD_ENV, USERNAME_ENV, url_with_credentials
from ._validate import optional_int, positive_seconds, string_map

SCOPES = ("local", "global", "system")
RESET_MODES = ("soft", "mixed", "hard", "merge", "keep")

# ``parse_status`` and ``parse_branches`` read exactly these outputs (NUL-separated).
STATUS_ARGV = ("status", "--porcelain=v1", "-z", "--branch")
BRANCHES_ARGV = ("for-each-ref", "--format=%(HEAD)%00%(refname:short)%00", "refs/heads")


def name(value: object, what: str) -> str:
    """A branch, remote, ref, key or URL: non-empty, and never read as an option."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    if value.startswith("-"):
        raise ValueError(f"{what} may not start with '-' ({value!r})")
    return value


def paths(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(p, str) and p for p in items):
        raise TypeError("paths must be a string or a sequence of non-empty strings")
    return items


def credential(value: object, what: str) -> str:
    """A username or password: a non-empty string (an empty one is a mistake, not "none")."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    return value


def credentials(username: object, password: object) -> tuple[str, str] | None:
    """Both credentials, or neither: one without the other is refused, as is an empty one."""
    if username is None and password is None:
        return None
    if username is None:
        raise ValueError("a password was given without a username")
    if password is None:
        raise ValueError("a username was given without a password")
    return credential(username, "username"), credential(password, "password")


def credential_options(pair: tuple[str, str]) -> tuple[list[str], dict[str, str]]:
    """git's options and the secret environment that hand ``pair`` to the credential helper.

    The first, empty ``credential.helper`` drops any helper configured in the capsule,
    so git asks only ours, which reads the two variables of the exec request.
    """
    options = ["-c", "credential.helper=", "-c", f"credential.helper={ENV_CREDENTIAL_HELPER}"]
    return options, {USERNAME_ENV: pair[0], PASSWORD_ENV: pair[1]}


def environment(envs: dict[str, str] | None) -> dict[str, str]:
    """The command's environment: a missing credential fails instead of waiting for input."""
    return {"GIT_TERMINAL_PROMPT": "0", **(string_map(envs, "envs") or {})}


def timeout(value: float | None) -> float:
    """``None`` means the default command timeout, as ``commands.run`` takes it."""
    return positive_seconds(DEFAULT_COMMAND_TIMEOUT if value is None else value, "timeout")


def scope(value: str) -> str:
    if value not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {value!r}")
    return f"--{value}"


def clone_argv(
    url: str,
    dest: str | None,
    *,
    branch: str | None,
    depth: int | None,
    store_credentials: bool = False,
    username: str | None = None,
    password: str | None = None,
) -> list[str]:
    """``git clone``; with ``store_credentials`` the credentials go into the remote URL."""
    argv = ["clone"]
    if branch is not None:
        argv += ["--branch", name(branch, "branch")]
    if depth is not None:
        argv += ["--depth", str(optional_int(depth, "depth", minimum=1))]
    target = name(url, "url")
    if store_credentials:
        pair = credentials(username, password)
        if pair is None:
            raise ValueError("dangerously_store_credentials needs username and password")
        target = url_with_credentials(target, *pair)
    argv += ["--", target]
    if dest is not None:
        argv.append(dest)
    return argv


def init_argv(path: str, *, bare: bool, initial_branch: str | None) -> list[str]:
    argv = ["init"]
    if bare:
        argv.append("--bare")
    if initial_branch is not None:
        argv.append(f"--initial-branch={name(initial_branch, 'initial_branch')}")
    return [*argv, "--", path]


def add_argv(items: str | Sequence[str] | None, *, all: bool) -> list[str]:
    checked = paths(items)
    if all:
        return ["add", "-A", "--", *checked]
    if checked:
        return ["add", "--", *checked]
    raise ValueError("give paths to add, or all=True")


def commit_argv(
    message: str, *, allow_empty: bool, author_name: str | None, author_email: str | None
) -> list[str]:
    if not isinstance(message, str) or not message:
        raise ValueError("message must be a non-empty string")
    argv = []
    if author_name is not None:
        argv += ["-c", f"user.name={author_name}"]
    if author_email is not None:
        argv += ["-c", f"user.email={author_email}"]
    argv += ["commit", "-m", message]
    if allow_empty:
        argv.append("--allow-empty")
    return argv


def push_argv(remote: str, branch: str | None, *, force: bool, set_upstream: bool) -> list[str]:
    argv = ["push"]
    if force:
        argv.append("--force")
    if set_upstream:
        argv.append("--set-upstream")
    return _remote_and_branch(argv, remote, branch)


def pull_argv(remote: str, branch: str | None, *, rebase: bool, ff_only: bool) -> list[str]:
    argv = ["pull"]
    if rebase:
        argv.append("--rebase")
    if ff_only:
        argv.append("--ff-only")
    return _remote_and_branch(argv, remote, branch)


def _remote_and_branch(argv: list[str], remote: str, branch: str | None) -> list[str]:
    argv.append(name(remote, "remote"))
    if branch is not None:
        argv.append(name(branch, "branch"))
    return argv


def create_branch_argv(branch: str, start_point: str | None) -> list[str]:
    argv = ["checkout", "-b", name(branch, "name")]
    if start_point is not None:
        argv.append(name(start_point, "start_point"))
    return argv


def checkout_branch_argv(branch: str) -> list[str]:
    return ["checkout", name(branch, "name")]


def delete_branch_argv(branch: str, *, force: bool) -> list[str]:
    return ["branch", "-D" if force else "-d", name(branch, "name")]


def remote_add_argv(remote: str, url: str, *, fetch: bool) -> list[str]:
    argv = ["remote", "add"]
    if fetch:
        argv.append("-f")
    return [*argv, "--", name(remote, "name"), name(url, "url")]


def remote_get_argv(remote: str) -> list[str]:
    return ["remote", "get-url", "--", name(remote, "name")]


def reset_argv(mode: str | None, ref: str | None, items: str | Sequence[str] | None) -> list[str]:
    argv = ["reset"]
    if mode is not None:
        if mode not in RESET_MODES:
            raise ValueError(f"mode must be one of {', '.join(RESET_MODES)}, not {mode!r}")
        argv.append(f"--{mode}")
    if ref is not None:
        argv.append(name(ref, "ref"))
    checked = paths(items)
    if checked:
        argv += ["--", *checked]
    return argv


def restore_argv(
    items: str | Sequence[str], *, staged: bool, worktree: bool, source: str | None
) -> list[str]:
    checked = paths(items)
    if not checked:
        raise ValueError("give at least one path to restore")
    argv = ["restore"]
    if staged:
        argv.append("--staged")
    if worktree:
        argv.append("--worktree")
    if source is not None:
        argv.append(f"--source={name(source, 'source')}")
    return [*argv, "--", *checked]


def set_config_argv(key: str, value: str, config_scope: str) -> list[str]:
    if not isinstance(value, str):
        raise TypeError("value must be a string")
    return ["config", scope(config_scope), name(key, "key"), value]


def get_config_argv(key: str, config_scope: str) -> list[str]:
    return ["config", scope(config_scope), "--get", name(key, "key")]


def user_identity(user_name: str, email: str) -> None:
    """``configure_user``'s check: both parts non-empty (git would store an empty one)."""
    if not isinstance(user_name, str) or not user_name:
        raise ValueError("name must be a non-empty string")
    if not isinstance(email, str) or not email:
        raise ValueError("email must be a non-empty string")


def credential_approve_argv(protocol: str, host: str) -> list[str]:
    """A shell command that stores the credentials of the secret environment for a host.

    ``git credential approve`` reads them on stdin; the script takes them from the
    environment variables, so they never appear in argv.
    """
    script = (
        f'printf "protocol=%s\\nhost=%s\\nusername=%s\\npassword=%s\\n\\n" '
        f'"$1" "$2" "${USERNAME_ENV}" "${PASSWORD_ENV}" | git credential approve'
    )
    return ["sh", "-c", script, "sh", name(protocol, "protocol"), name(host, "host")]
