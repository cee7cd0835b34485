"""Git inside a capsule: data types, errors and output parsing shared by both clients.

Nothing here runs git; ``_async/git.py`` runs the argv lists of ``_git_commands.py``
through the capsule's commands, then hands the output to the parsers below.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse

# The git errors are defined with every other error; this module keeps exporting them.
from ._exceptions import GitAuthError, GitCommandError, GitError

__all__ = [
    "FileStatus",
    "GitAuthError",
    "GitBranch",
    "GitCommandError",
    "GitError",
    "GitStatus",
]

# Environment variable names that carry credentials to git's credential helper. They
# travel only in the exec request's environment, never in argv or in a file.
USERNAME_ENV = "WRENN_GIT_USERNAME"
PASSWORD_ENV = "WRENN_GIT_PASSWORD"
# A credential helper that answers from the environment; it holds no secret itself.
ENV_CREDENTIAL_HELPER = (
    f'!f() {{ test "$1" = get || exit 0; echo "username=${{{USERNAME_ENV}}}"; '
    f'echo "password=${{{PASSWORD_ENV}}}"; }}; f'
)

_AUTH_PATTERNS = re.compile(
    r"authentication failed|could not read (username|password)|terminal prompts disabled|"
    r"invalid (username|credentials)|permission denied \(publickey|access denied|"
    r"http basic: access denied|the requested url returned error: (401|403)",
    re.IGNORECASE,
)


@dataclasses.dataclass
class FileStatus:
    """One changed path of ``git status``."""

    path: str
    index_status: str
    work_tree_status: str
    renamed_from: str | None = None

    @property
    def staged(self) -> bool:
        return self.index_status not in (" ", "?", "!")

    @property
    def status(self) -> str:
        codes = self.index_status + self.work_tree_status
        if "U" in codes or codes in ("AA", "DD"):
            return "conflict"
        if codes == "??":
            return "untracked"
        for code, name in (
            ("R", "renamed"),
            ("C", "copied"),
            ("D", "deleted"),
            ("A", "added"),
            ("M", "modified"),
            ("T", "typechange"),
        ):
            if code in codes:
                return name
        return "unknown"


@dataclasses.dataclass
class GitStatus:
    """The state of a working tree: branch, upstream and changed files."""

    branch: str | None = None
    upstream: str | None = None
    ahead: int = 0
    behind: int = 0
    detached: bool = False
    files: list[FileStatus] = dataclasses.field(default_factory=list)

    @property
    def is_clean(self) -> bool:
        return not self.files

    @property
    def has_staged(self) -> bool:
        return any(f.staged for f in self.files)

    @property
    def has_untracked(self) -> bool:
        return any(f.status == "untracked" for f in self.files)

    @property
    def has_conflicts(self) -> bool:
        return any(f.status == "conflict" for f in self.files)


@dataclasses.dataclass
class GitBranch:
    name: str
    is_current: bool = False


_BRANCH_HEADER = re.compile(
    r"^(?P<branch>.+?)(?:\.\.\.(?P<upstream>\S+))?(?: \[(?P<track>[^\]]*)\])?$"
)


def parse_status(output: str) -> GitStatus:
    """Parse ``git status --porcelain=v1 -z --branch``: NUL-separated, so any path survives."""
    status = GitStatus()
    records = output.split("\0")
    index = 0
    while index < len(records):
        record = records[index]
        index += 1
        if not record:
            continue
        if record.startswith("## "):
            _parse_branch(record[3:], status)
            continue
        if len(record) < 4:
            continue
        x, y, path = record[0], record[1], record[3:]
        renamed_from = None
        if x in "RC" or y in "RC":
            # With -z the source path of a rename or copy is the next record.
            renamed_from = records[index] if index < len(records) else None
            index += 1
        status.files.append(FileStatus(path, x, y, renamed_from))
    return status


def _parse_branch(header: str, status: GitStatus) -> None:
    if header.startswith("HEAD (no branch)") or header.startswith("HEAD (detached"):
        status.detached = True
        status.branch = None
        return
    if header.startswith("No commits yet on "):
        header = header[len("No commits yet on ") :]
    elif header.startswith("Initial commit on "):
        header = header[len("Initial commit on ") :]
    match = _BRANCH_HEADER.match(header)
    if match is None:
        status.branch = header
        return
    status.branch = match.group("branch")
    status.upstream = match.group("upstream")
    for part in (match.group("track") or "").split(","):
        word, _, number = part.strip().partition(" ")
        if number.isdigit():
            if word == "ahead":
                status.ahead = int(number)
            elif word == "behind":
                status.behind = int(number)


def parse_branches(output: str) -> list[GitBranch]:
    """Parse ``git for-each-ref --format=%(HEAD)%00%(refname:short)%00 refs/heads``."""
    fields = output.replace("\n", "").split("\0")
    branches = []
    for marker, name in zip(fields[0::2], fields[1::2], strict=False):
        if name:
            branches.append(GitBranch(name=name, is_current=marker == "*"))
    return branches


def is_auth_failure(stderr: str) -> bool:
    return bool(_AUTH_PATTERNS.search(stderr))


def command_error(command: str, exit_code: int, stderr: str) -> GitError:
    """The error of a failed git command (``GitAuthError`` when authentication failed).

    The message ends with git's last line of error output, which names the cause.
    """
    detail = stderr.strip().splitlines()[-1] if stderr.strip() else "no error output"
    message = f"git {command} failed with exit code {exit_code}: {detail}"
    error = GitAuthError if is_auth_failure(stderr) else GitCommandError
    return error(message, stderr=stderr, exit_code=exit_code)


def redact(text: str, secrets: list[str]) -> str:
    """Remove credentials from git output: URL user-info and the given secret strings."""
    text = re.sub(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@", r"\1***@", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
            quoted = urllib.parse.quote(secret, safe="")
            if quoted != secret:
                text = text.replace(quoted, "***")
    return text


def url_with_credentials(url: str, username: str, password: str) -> str:
    """Embed percent-encoded credentials in an http(s) URL (for the explicitly dangerous mode)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("credentials can only be embedded in an http(s) URL")
    userinfo = f"{urllib.parse.quote(username, safe='')}:{urllib.parse.quote(password, safe='')}"
    host = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit(
        (parts.scheme, f"{userinfo}@{host}", parts.path, parts.query, parts.fragment)
    )
