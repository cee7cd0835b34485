"""Commands in a capsule: foreground, argv, environment, timeouts, background jobs, streams."""

from __future__ import annotations

from _backend import backend

from wrenn import Capsule, StreamStdoutEvent, WrennCommandTimeoutError


def main() -> None:
    with backend() as keys, Capsule(**keys) as capsule:
        result = capsule.commands.run("echo $((6 * 7)); echo oops >&2; exit 3")
        print(f"shell: exit {result.exit_code}, stdout {result.stdout!r}, stderr {result.stderr!r}")

        listing = capsule.commands.run(["ls", "-1", "/"], cwd="/")  # argv: no shell, no quoting
        print(f"argv: {len(listing.stdout.split())} entries in /")

        env = capsule.commands.run(
            "echo $GREETING from $(pwd)", envs={"GREETING": "hi"}, cwd="/tmp"
        )
        print(f"envs and cwd: {env.stdout.strip()!r}")

        try:
            capsule.commands.run("echo started; sleep 60", timeout=1)
        except WrennCommandTimeoutError as exc:
            print(f"timeout: stopped after 1 s, output so far {exc.stdout!r}")

        job = capsule.commands.run("sleep 0.5; echo finished", background=True, tag="job")
        print(
            f"background: pid {job.pid}, tag {job.tag!r}, listed: {[p.tag for p in capsule.commands.list()]}"
        )
        print(f"waited: {job.wait(timeout=30).stdout.strip()!r}")

        with capsule.commands.stream("for i in 1 2 3; do echo line $i; sleep 0.1; done") as events:
            lines = [event.data.strip() for event in events if isinstance(event, StreamStdoutEvent)]
        print(f"streamed: {lines}")
    print("done")


if __name__ == "__main__":
    main()
