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


async def test_push_pull_and_credentials_stay_out_of_the_repository(
    local_server: LocalServer,
) -> None:
    async with await AsyncCapsule.create(
        api_key=local_server.api_key, base_url=local_server.base_url
    ) as capsule:
        git = capsule.git
        await git.init("/root/origin.git", bare=True, initial_branch="main")
        secret = "s3cr3t-t0ken"
        await git.clone("/root/origin.git", "/root/a", username="bot", password=secret)
        await capsule.files.write("/root/a/f.txt", "v1")
        await git.add("f.txt", cwd="/root/a")
        await git.commit("one", author_name="Bot", author_email="bot@example.com", cwd="/root/a")
        await git.push(
            "origin", "main", set_upstream=True, username="bot", password=secret, cwd="/root/a"
        )
        await git.clone("/root/origin.git", "/root/b", branch="main", depth=1)
        await capsule.files.write("/root/a/f.txt", "v2")
        await git.add(["f.txt"], cwd="/root/a")
        await git.commit(
            "two",
            allow_empty=True,
            author_name="Bot",
            author_email="bot@example.com",
            cwd="/root/a",
        )
        await git.push(force=True, cwd="/root/a")
        await git.pull(ff_only=True, cwd="/root/b")
        assert await capsule.files.read("/root/b/f.txt") == "v2"
        await git.pull(
            "origin", "main", rebase=True, username="bot", password=secret, cwd="/root/b"
        )
        status = await git.status(cwd="/root/b")
        assert status.upstream == "origin/main" and status.ahead == 0 and status.behind == 0
        found = await capsule.commands.run(
            ["grep", "-rl", secret, "/root/a/.git", "/root/b/.git", "/root"]
        )
        assert found.stdout == ""  # the token was never written to disk
        await git.create_branch("topic", start_point="main", cwd="/root/a")
        await git.checkout_branch("main", cwd="/root/a")
        await git.delete_branch("topic", force=True, cwd="/root/a")
        await git.set_config("pull.rebase", "false", cwd="/root/a")
        assert await git.get_config("pull.rebase", cwd="/root/a") == "false"
        await capsule.files.write("/root/a/f.txt", "staged")
        await git.add(all=True, cwd="/root/a")
        await git.restore("f.txt", staged=True, source="HEAD", cwd="/root/a")
        await git.reset(paths=["f.txt"], cwd="/root/a")


async def test_dangerous_credential_storage_is_explicit(local_server: LocalServer) -> None:
    async with await AsyncCapsule.create(
        api_key=local_server.api_key, base_url=local_server.base_url
    ) as capsule:
        git = capsule.git
        await git.dangerously_authenticate("bot", "p@ss:word", host="example.com")
        assert await git.get_config("credential.helper", scope="global") == "store"
        stored = await capsule.files.read("/root/.git-credentials")
        assert stored.strip() == "https://bot:p%40ss%3aword@example.com"
        with pytest.raises(ValueError):
            await git.clone(
                "/root/x.git", dangerously_store_credentials=True, username="a", password="b"
            )
        with pytest.raises(ValueError):
            await git.clone("https://example.com/x.git", dangerously_store_credentials=True)


async def test_bad_git_arguments_fail_before_running(local_server: LocalServer) -> None:
    async with await AsyncCapsule.create(
        api_key=local_server.api_key, base_url=local_server.base_url
    ) as capsule:
        git = capsule.git
        with pytest.raises(ValueError):
            await git.add()
        with pytest.raises(ValueError):
            await git.commit("")
        with pytest.raises(ValueError):
            await git.reset(mode="sideways")
        with pytest.raises(ValueError):
            await git.restore([])
        with pytest.raises(ValueError):
            await git.set_config("a.b", "c", scope="team")
        with pytest.raises(TypeError):
            await git.add([1])  # type: ignore[list-item]
        with pytest.raises(ValueError):
            await git.push(username="only-user")
        with pytest.raises(ValueError):
            await git.create_branch("-rf")
