"""Git in a capsule: a repository, a commit, a branch, a push to a local bare remote."""

from __future__ import annotations

from _backend import backend

from wrenn import Capsule


def main() -> None:
    with backend() as keys, Capsule(**keys) as capsule:
        git, repo = capsule.git, "/workspace/project"
        git.init("/workspace/remote.git", bare=True, initial_branch="main")
        git.clone("/workspace/remote.git", repo)
        git.configure_user("Example", "example@example.com")
        capsule.files.write(f"{repo}/README.md", "# project\n")
        print(f"untracked: {[f.path for f in git.status(cwd=repo).files]}")
        git.add(all=True, cwd=repo)
        git.commit("Add a README", cwd=repo)
        git.push("origin", "main", set_upstream=True, cwd=repo)
        status = git.status(cwd=repo)
        print(
            f"after push: branch {status.branch}, upstream {status.upstream}, clean {status.is_clean}"
        )
        git.create_branch("feature", cwd=repo)
        print(f"branches: {[(b.name, b.is_current) for b in git.branches(cwd=repo)]}")
    print("done")


if __name__ == "__main__":
    main()
