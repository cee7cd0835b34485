"""Git inside a capsule, end to end against wrenn.local."""

from __future__ import annotations

import pytest

from wrenn import AsyncCapsule, GitCommandError
from wrenn.local import LocalServer

pytestmark = pytest.mark.anyio


async def test_repository_workflow(local_server: LocalServer) -> None:
    async with await AsyncCapsule.create(
        api_key=local_server.api_key, base_url=local_server.base_url
    ) as capsule:
        git, repo = capsule.git, "/root/repo"
        await git.init(repo, initial_branch="main")
        await git.configure_user("Tester", "tester@example.com", scope="global")
        assert await git.get_config("user.name", scope="global") == "Tester"
        assert await git.get_config("no.such-key", cwd=repo) is None
        await capsule.files.write(f"{repo}/a file.txt", "one")
        await capsule.files.write(f"{repo}/ü.txt", "two")
        status = await git.status(cwd=repo)
        assert status.branch == "main" and status.has_untracked
        assert sorted(f.path for f in status.files) == ["a file.txt", "ü.txt"]
        await git.add(all=True, cwd=repo)
        assert (await git.status(cwd=repo)).has_staged
        await git.commit("first", cwd=repo)
        assert (await git.status(cwd=repo)).is_clean
        await git.create_branch("feature", cwd=repo)
        assert [(b.name, b.is_current) for b in await git.branches(cwd=repo)] == [
            ("feature", True),
            ("main", False),
        ]
        await git.checkout_branch("main", cwd=repo)
        await git.delete_branch("feature", cwd=repo)
        assert await git.remote_get(cwd=repo) is None
        await git.remote_add("origin", "https://example.invalid/repo.git", cwd=repo)
        assert await git.remote_get(cwd=repo) == "https://example.invalid/repo.git"
        await capsule.files.write(f"{repo}/a file.txt", "changed")
        await git.restore("a file.txt", worktree=True, cwd=repo)
        assert await capsule.files.read(f"{repo}/a file.txt") == "one"
        await git.reset(mode="hard", ref="HEAD", cwd=repo)
        with pytest.raises(GitCommandError) as info:
            await git.checkout_branch("missing-branch", cwd=repo)
        assert info.value.exit_code != 0 and "missing-branch" in info.value.stderr


async def test_clone_from_a_local_bare_repository(local_server: LocalServer) -> None:
    async with await AsyncCapsule.create(
        api_key=local_server.api_key, base_url=local_server.base_url
    ) as capsule:
        git = capsule.git
        await git.init("/root/origin.git", bare=True, initial_branch="main")
        await git.clone("/root/origin.git", "/root/work")
        assert await git.remote_get(cwd="/root/work") == "/root/origin.git"
        with pytest.raises(ValueError):
            await git.clone("--upload-pack=evil", "/root/x")
