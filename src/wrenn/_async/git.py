"""``capsule.git``: git commands run inside the capsule.

Every method runs ``git`` as an argv list (no shell quoting to get wrong), with
``GIT_TERMINAL_PROMPT=0`` so a missing credential fails instead of waiting for input.
Credentials given to ``clone``/``push``/``pull`` reach git through a credential helper
that reads them from the exec request's environment: they are never written to disk,
never put in argv or in ``.git/config``, and are removed from any error message.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import _git_commands
from .._exceptions import WrennCommandTimeoutError
from .._git import (
    PASSWORD_ENV,
    USERNAME_ENV,
    GitBranch,
    GitCommandError,
    GitStatus,
    command_error,
    parse_branches,
    parse_status,
    redact,
)
from .._process import CommandResult
from .commands import AsyncCommands


class AsyncGit:
    """Git in one capsule. Each method also takes ``cwd`` (the repository) and ``envs``."""

    def __init__(self, commands: AsyncCommands) -> None:
        self._commands = commands

    async def _git(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None,
        envs: dict[str, str] | None,
        timeout: float | None,
        username: str | None = None,
        password: str | None = None,
        check: bool = True,
        hide: Sequence[str | None] = (),
    ) -> CommandResult:
        environment = _git_commands.environment(envs)
        secrets: dict[str, str] | None = None
        options: list[str] = []
        credentials = _git_commands.credentials(username, password)
        if credentials is not None:
            options, secrets = _git_commands.credential_options(credentials)
        hidden = [s for s in (username, password, *hide) if s]
        try:
            result = await self._commands._run_foreground(
                ["git", *options, *argv],
                _git_commands.timeout(timeout),
                environment,
                cwd,
                secret_envs=secrets,
            )
        except WrennCommandTimeoutError as exc:
            exc.stdout, exc.stderr = redact(exc.stdout, hidden), redact(exc.stderr, hidden)
            raise
        result.stdout, result.stderr = redact(result.stdout, hidden), redact(result.stderr, hidden)
        if check and result.exit_code != 0:
            raise command_error(argv[0], result.exit_code, result.stderr)
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
        argv = _git_commands.clone_argv(
            url,
            dest,
            branch=branch,
            depth=depth,
            store_credentials=dangerously_store_credentials,
            username=username,
            password=password,
        )
        if dangerously_store_credentials:
            # The credentials are in the URL (git gets no helper): keep them out of errors.
            hide = [username, password]
            return await self._git(argv, cwd=cwd, envs=envs, timeout=timeout, hide=hide)
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
        argv = _git_commands.init_argv(path, bare=bare, initial_branch=initial_branch)
        return await self._git(argv, cwd=cwd, envs=envs, timeout=timeout)

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
        argv = _git_commands.add_argv(paths, all=all)
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
        argv = _git_commands.commit_argv(
            message, allow_empty=allow_empty, author_name=author_name, author_email=author_email
        )
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
        argv = _git_commands.push_argv(remote, branch, force=force, set_upstream=set_upstream)
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
        argv = _git_commands.pull_argv(remote, branch, rebase=rebase, ff_only=ff_only)
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
        argv = _git_commands.STATUS_ARGV
        result = await self._git(argv, cwd=cwd, envs=envs, timeout=timeout)
        return parse_status(result.stdout)

    async def branches(
        self,
        *,
        timeout: float | None = 30,
        cwd: str | None = None,
        envs: dict[str, str] | None = None,
    ) -> list[GitBranch]:
        """Local branches, with the current one marked."""
        argv = _git_commands.BRANCHES_ARGV
        result = await self._git(argv, cwd=cwd, envs=envs, timeout=timeout)
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
        argv = _git_commands.create_branch_argv(name, start_point)
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
        argv = _git_commands.checkout_branch_argv(name)
        return await self._git(argv, cwd=cwd, envs=envs, timeout=timeout)

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
        argv = _git_commands.delete_branch_argv(name, force=force)
        return await self._git(argv, cwd=cwd, envs=envs, timeout=timeout)

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
        argv = _git_commands.remote_add_argv(name, url, fetch=fetch)
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
        argv = _git_commands.remote_get_argv(name)
        result = await self._git(argv, cwd=cwd, envs=envs, timeout=timeout, check=False)
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
        argv = _git_commands.reset_argv(mode, ref, paths)
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
        argv = _git_commands.restore_argv(paths, staged=staged, worktree=worktree, source=source)
        return await self._git(argv, cwd=cwd, envs=envs, timeout=timeout)

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
        argv = _git_commands.set_config_argv(key, value, scope)
        return await self._git(argv, cwd=cwd, envs=envs, timeout=timeout)

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
        argv = _git_commands.get_config_argv(key, scope)
        result = await self._git(argv, cwd=cwd, envs=envs, timeout=timeout, check=False)
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
        _git_commands.user_identity(name, email)
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
        username = _git_commands.credential(username, "username")
        password = _git_commands.credential(password, "password")
        await self.set_config(
            "credential.helper", "store", scope="global", timeout=timeout, cwd=cwd, envs=envs
        )
        result = await self._commands._run_foreground(
            _git_commands.credential_approve_argv(protocol, host),
            _git_commands.timeout(timeout),
            _git_commands.environment(envs),
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
