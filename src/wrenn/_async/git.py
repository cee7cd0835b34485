"""``capsule.git``: git commands run inside the capsule.

Every method runs ``git`` as an argv list (no shell quoting to get wrong), with
``GIT_TERMINAL_PROMPT=0`` so a missing credential fails instead of waiting for input.
Credentials given to ``clone``/``push``/``pull`` reach git through a credential helper
that reads them from the exec request's environment: they are never written to disk,
never put in argv or in ``.git/config``, and are removed from any error message.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._constants import DEFAULT_COMMAND_TIMEOUT
from .._exceptions import WrennCommandTimeoutError
from .._git import (
    ENV_CREDENTIAL_HELPER,
    PASSWORD_ENV,
    USERNAME_ENV,
    GitAuthError,
    GitBranch,
    GitCommandError,
    GitStatus,
    is_auth_failure,
    parse_branches,
    parse_status,
    redact,
    url_with_credentials,
)
from .._process import CommandResult
from .._validate import optional_int, positive_seconds, string_map
from .commands import AsyncCommands

_SCOPES = ("local", "global", "system")
_RESET_MODES = ("soft", "mixed", "hard", "merge", "keep")


def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    if value.startswith("-"):
        raise ValueError(f"{what} may not start with '-' ({value!r})")
    return value


def _paths(paths: str | Sequence[str] | None) -> list[str]:
    if paths is None:
        return []
    items = [paths] if isinstance(paths, str) else list(paths)
    if not all(isinstance(p, str) and p for p in items):
        raise TypeError("paths must be a string or a sequence of non-empty strings")
    return items


def _credential(value: object, what: str) -> str:
    """A username or password: a non-empty string (an empty one is a mistake, not "none")."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    return value


def _credentials(username: object, password: object) -> tuple[str, str] | None:
    """Both credentials, or neither: one without the other is refused, as is an empty one."""
    if username is None and password is None:
        return None
    if username is None:
        raise ValueError("a password was given without a username")
    if password is None:
        raise ValueError("a username was given without a password")
    return _credential(username, "username"), _credential(password, "password")


def _timeout(value: float | None) -> float:
    """``None`` means the default command timeout, as ``commands.run`` takes it."""
    return positive_seconds(DEFAULT_COMMAND_TIMEOUT if value is None else value, "timeout")


def _scope(scope: str) -> str:
    if scope not in _SCOPES:
        raise ValueError(f"scope must be one of {', '.join(_SCOPES)}, not {scope!r}")
    return f"--{scope}"


class AsyncGit:
    """Git in one capsule. Each method also takes ``cwd`` (the repository) and ``envs``."""

    def __init__(self, commands: AsyncCommands) -> None:
        self._commands = commands

    async def _git(
        self,
        argv: list[str],
        *,
        cwd: str | None,
        envs: dict[str, str] | None,
        timeout: float | None,
        username: str | None = None,
        password: str | None = None,
        check: bool = True,
        hide: list[str] | None = None,
    ) -> CommandResult:
        environment = {"GIT_TERMINAL_PROMPT": "0", **(string_map(envs, "envs") or {})}
        secrets: dict[str, str] | None = None
        prefix: list[str] = []
        credentials = _credentials(username, password)
        if credentials is not None:
            secrets = {USERNAME_ENV: credentials[0], PASSWORD_ENV: credentials[1]}
            prefix = [
                "-c",
                "credential.helper=",
                "-c",
                f"credential.helper={ENV_CREDENTIAL_HELPER}",
            ]
        hidden = [s for s in (username, password, *(hide or [])) if s]
        try:
            result = await self._commands._run_foreground(
                ["git", *prefix, *argv],
                _timeout(timeout),
                environment,
                cwd,
                secret_envs=secrets,
            )
        except WrennCommandTimeoutError as exc:
            exc.stdout, exc.stderr = redact(exc.stdout, hidden), redact(exc.stderr, hidden)
            raise
        result.stdout, result.stderr = redact(result.stdout, hidden), redact(result.stderr, hidden)
        if check and result.exit_code != 0:
            detail = (
                result.stderr.strip().splitlines()[-1]
                if result.stderr.strip()
                else "no error output"
            )
            message = f"git {argv[0]} failed with exit code {result.exit_code}: {detail}"
            error = GitAuthError if is_auth_failure(result.stderr) else GitCommandError
            raise error(message, stderr=result.stderr, exit_code=result.exit_code)
        return result

    async def clone(
        self,
        url: str,
        dest: str | None = None,
        *,
        branch: str | None = None,
        depth: int | None = None,
        username: str | None = None,
        password: str | None = None,
        dangerously_store_credentials: bool = False,
        timeout: float | None = 300,
        cwd: str | None = None,
        envs: dict[str, str] | None = None,
    ) -> CommandResult:
        """Clone a repository. With ``dangerously_store_credentials`` the credentials are kept in the remote URL."""
        argv = ["clone"]
        if branch is not None:
            argv += ["--branch", _name(branch, "branch")]
        if depth is not None:
            argv += ["--depth", str(optional_int(depth, "depth", minimum=1))]
        target = _name(url, "url")
        if dangerously_store_credentials:
            credentials = _credentials(username, password)
            if credentials is None:
                raise ValueError("dangerously_store_credentials needs username and password")
            hide = list(credentials)
            argv += ["--", url_with_credentials(target, *credentials)]
            if dest is not None:
                argv.append(dest)
            return await self._git(argv, cwd=cwd, envs=envs, timeout=timeout, hide=hide)
        argv += ["--", target]
        if dest is not None:
            argv.append(dest)
        return await self._git(
            argv, cwd=cwd, envs=envs, timeout=timeout, username=username, password=password
        )

    async def init(
        self,
        path: str = ".",
        *,
        bare: bool = False,
        initial_branch: str | None = None,
        timeout: float | None = 30,
        cwd: str | None = None,
        envs: dict[str, str] | None = None,
    ) -> CommandResult:
        """Create a repository."""
        argv = ["init"]
        if bare:
            argv.append("--bare")
        if initial_branch is not None:
            argv.append(f"--initial-branch={_name(initial_branch, 'initial_branch')}")
        return await self._git([*argv, "--", path], cwd=cwd, envs=envs, timeout=timeout)

    async def add(
        self,
        paths: str | Sequence[str] | None = None,
        *,
        all: bool = False,
        timeout: float | None = 30,
        cwd: str | None = None,
        envs: dict[str, str] | None = None,
    ) -> CommandResult:
        """Stage paths, or everything with ``all=True``."""
        items = _paths(paths)
        if all:
            argv = ["add", "-A", "--", *items]
        elif items:
            argv = ["add", "--", *items]
        else:
            raise ValueError("give paths to add, or all=True")
        return await self._git(argv, cwd=cwd, envs=envs, timeout=timeout)

    async def commit(
        self,
        message: str,
        *,
        allow_empty: bool = False,
        author_name: str | None = None,
        author_email: str | None = None,
        timeout: float | None = 30,
        cwd: str | None = None,
        envs: dict[str, str] | None = None,
    ) -> CommandResult:
        """Commit the staged changes."""
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
        return await self._git(argv, cwd=cwd, envs=envs, timeout=timeout)

    async def push(
        self,
        remote: str = "origin",
        branch: str | None = None,
        *,
        force: bool = False,
        set_upstream: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float | None = 60,
        cwd: str | None = None,
        envs: dict[str, str] | None = None,
    ) -> CommandResult:
        """Push to a remote."""
        argv = ["push"]
        if force:
            argv.append("--force")
        if set_upstream:
            argv.append("--set-upstream")
        argv.append(_name(remote, "remote"))
        if branch is not None:
            argv.append(_name(branch, "branch"))
        return await self._git(
            argv, cwd=cwd, envs=envs, timeout=timeout, username=username, password=password
        )

    async def pull(
        self,
        remote: str = "origin",
        branch: str | None = None,
        *,
        rebase: bool = False,
        ff_only: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float | None = 60,
        cwd: str | None = None,
        envs: dict[str, str] | None = None,
    ) -> CommandResult:
        """Pull from a remote."""
        argv = ["pull"]
        if rebase:
            argv.append("--rebase")
        if ff_only:
            argv.append("--ff-only")
        argv.append(_name(remote, "remote"))
        if branch is not None:
            argv.append(_name(branch, "branch"))
        return await self._git(
            argv, cwd=cwd, envs=envs, timeout=timeout, username=username, password=password
        )

    async def status(
        self,
        *,
        timeout: float | None = 30,
        cwd: str | None = None,
        envs: dict[str, str] | None = None,
    ) -> GitStatus:
        """Branch, upstream, ahead/behind and changed files (parsed from NUL-separated output)."""
        result = await self._git(
            ["status", "--porcelain=v1", "-z", "--branch"], cwd=cwd, envs=envs, timeout=timeout
        )
        return parse_status(result.stdout)

    async def branches(
        self,
        *,
        timeout: float | None = 30,
        cwd: str | None = None,
        envs: dict[str, str] | None = None,
    ) -> list[GitBranch]:
        """Local branches, with the current one marked."""
        result = await self._git(
            ["for-each-ref", "--format=%(HEAD)%00%(refname:short)%00", "refs/heads"],
            cwd=cwd,
            envs=envs,
            timeout=timeout,
        )
        return parse_branches(result.stdout)

    async def create_branch(
        self,
        name: str,
        *,
        start_point: str | None = None,
        timeout: float | None = 30,
        cwd: str | None = None,
        envs: dict[str, str] | None = None,
    ) -> CommandResult:
        """Create a branch and switch to it."""
        argv = ["checkout", "-b", _name(name, "name")]
        if start_point is not None:
            argv.append(_name(start_point, "start_point"))
        return await self._git(argv, cwd=cwd, envs=envs, timeout=timeout)

    async def checkout_branch(
        self,
        name: str,
        *,
        timeout: float | None = 30,
        cwd: str | None = None,
        envs: dict[str, str] | None = None,
    ) -> CommandResult:
        """Switch to a branch."""
        return await self._git(
            ["checkout", _name(name, "name")], cwd=cwd, envs=envs, timeout=timeout
        )

    async def delete_branch(
        self,
        name: str,
        *,
        force: bool = False,
        timeout: float | None = 30,
        cwd: str | None = None,
        envs: dict[str, str] | None = None,
    ) -> CommandResult:
        """Delete a branch (``force`` also when it is not merged)."""
        return await self._git(
            ["branch", "-D" if force else "-d", _name(name, "name")],
            cwd=cwd,
            envs=envs,
            timeout=timeout,
        )

    async def remote_add(
        self,
        name: str,
        url: str,
        *,
        fetch: bool = False,
        timeout: float | None = 30,
        cwd: str | None = None,
        envs: dict[str, str] | None = None,
    ) -> CommandResult:
        """Add a remote (and fetch it with ``fetch=True``)."""
        argv = ["remote", "add"]
        if fetch:
            argv.append("-f")
        argv += ["--", _name(name, "name"), _name(url, "url")]
        return await self._git(argv, cwd=cwd, envs=envs, timeout=timeout)

    async def remote_get(
        self,
        name: str = "origin",
        *,
        timeout: float | None = 30,
        cwd: str | None = None,
        envs: dict[str, str] | None = None,
    ) -> str | None:
        """The URL of a remote, or None if there is no such remote."""
        result = await self._git(
            ["remote", "get-url", "--", _name(name, "name")],
            cwd=cwd,
            envs=envs,
            timeout=timeout,
            check=False,
        )
        return result.stdout.strip() or None if result.exit_code == 0 else None

    async def reset(
        self,
        *,
        mode: str | None = None,
        ref: str | None = None,
        paths: str | Sequence[str] | None = None,
        timeout: float | None = 30,
        cwd: str | None = None,
        envs: dict[str, str] | None = None,
    ) -> CommandResult:
        """``git reset`` with an optional mode (soft, mixed, hard, merge, keep), ref and paths."""
        argv = ["reset"]
        if mode is not None:
            if mode not in _RESET_MODES:
                raise ValueError(f"mode must be one of {', '.join(_RESET_MODES)}, not {mode!r}")
            argv.append(f"--{mode}")
        if ref is not None:
            argv.append(_name(ref, "ref"))
        items = _paths(paths)
        if items:
            argv += ["--", *items]
        return await self._git(argv, cwd=cwd, envs=envs, timeout=timeout)

    async def restore(
        self,
        paths: str | Sequence[str],
        *,
        staged: bool = False,
        worktree: bool = False,
        source: str | None = None,
        timeout: float | None = 30,
        cwd: str | None = None,
        envs: dict[str, str] | None = None,
    ) -> CommandResult:
        """Restore paths in the index (``staged``) and/or the working tree."""
        items = _paths(paths)
        if not items:
            raise ValueError("give at least one path to restore")
        argv = ["restore"]
        if staged:
            argv.append("--staged")
        if worktree:
            argv.append("--worktree")
        if source is not None:
            argv.append(f"--source={_name(source, 'source')}")
        return await self._git([*argv, "--", *items], cwd=cwd, envs=envs, timeout=timeout)

    async def set_config(
        self,
        key: str,
        value: str,
        *,
        scope: str = "local",
        timeout: float | None = 30,
        cwd: str | None = None,
        envs: dict[str, str] | None = None,
    ) -> CommandResult:
        """Set a configuration value."""
        if not isinstance(value, str):
            raise TypeError("value must be a string")
        return await self._git(
            ["config", _scope(scope), _name(key, "key"), value], cwd=cwd, envs=envs, timeout=timeout
        )

    async def get_config(
        self,
        key: str,
        *,
        scope: str = "local",
        timeout: float | None = 30,
        cwd: str | None = None,
        envs: dict[str, str] | None = None,
    ) -> str | None:
        """A configuration value, or None when it is not set."""
        result = await self._git(
            ["config", _scope(scope), "--get", _name(key, "key")],
            cwd=cwd,
            envs=envs,
            timeout=timeout,
            check=False,
        )
        if result.exit_code == 1:
            return None
        if result.exit_code != 0:
            raise GitCommandError(
                f"git config failed with exit code {result.exit_code}",
                stderr=result.stderr,
                exit_code=result.exit_code,
            )
        return result.stdout.rstrip("\n")

    async def configure_user(
        self,
        name: str,
        email: str,
        *,
        scope: str = "global",
        timeout: float | None = 30,
        cwd: str | None = None,
        envs: dict[str, str] | None = None,
    ) -> None:
        """Set ``user.name`` and ``user.email`` (``ValueError`` if either is empty)."""
        if not isinstance(name, str) or not name:
            raise ValueError("name must be a non-empty string")
        if not isinstance(email, str) or not email:
            raise ValueError("email must be a non-empty string")
        await self.set_config("user.name", name, scope=scope, timeout=timeout, cwd=cwd, envs=envs)
        await self.set_config("user.email", email, scope=scope, timeout=timeout, cwd=cwd, envs=envs)

    async def dangerously_authenticate(
        self,
        username: str,
        password: str,
        host: str = "github.com",
        protocol: str = "https",
        *,
        timeout: float | None = 30,
        cwd: str | None = None,
        envs: dict[str, str] | None = None,
    ) -> None:
        """Store credentials in git's global credential store (on the capsule's disk, in clear text).

        ``ValueError`` if ``username`` or ``password`` is empty.
        """
        username = _credential(username, "username")
        password = _credential(password, "password")
        await self.set_config(
            "credential.helper", "store", scope="global", timeout=timeout, cwd=cwd, envs=envs
        )
        script = (
            f'printf "protocol=%s\\nhost=%s\\nusername=%s\\npassword=%s\\n\\n" '
            f'"$1" "$2" "${USERNAME_ENV}" "${PASSWORD_ENV}" | git credential approve'
        )
        result = await self._commands._run_foreground(
            ["sh", "-c", script, "sh", _name(protocol, "protocol"), _name(host, "host")],
            _timeout(timeout),
            {"GIT_TERMINAL_PROMPT": "0", **(string_map(envs, "envs") or {})},
            cwd,
            secret_envs={USERNAME_ENV: username, PASSWORD_ENV: password},
        )
        if result.exit_code != 0:
            stderr = redact(result.stderr, [username, password])
            raise GitCommandError(
                f"git credential approve failed with exit code {result.exit_code}",
                stderr=stderr,
                exit_code=result.exit_code,
            )
