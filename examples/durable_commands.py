"""Durable commands: output spooled in the capsule survives the client that started it."""

from __future__ import annotations

from _backend import backend

from wrenn import Capsule, DurableStdoutEvent

JOB = "for i in 1 2 3 4 5 6; do echo step $i; sleep 0.2; done; echo finished >&2; exit 3"


def main() -> None:
    with backend() as keys:
        first = Capsule(**keys)
        capsule_id = first.capsule_id
        try:
            first.commands.start_durable(JOB, tag="job", budget=1024 * 1024)
            with first.commands.attach("job") as stream:
                for _ in stream:  # read the first two lines, then "crash"
                    if stream.stdout_offset >= len(b"step 1\nstep 2\n"):
                        break
                offset = stream.stdout_offset
            print(f"first client read {offset} bytes, then went away")
            first.close()  # the client is gone; the command keeps running in the capsule

            second = Capsule.connect(capsule_id, **keys)
            with second.commands.attach("job", from_offset=offset) as resumed:
                rest = b"".join(e.raw for e in resumed if isinstance(e, DurableStdoutEvent))
            print(f"second client resumed at byte {offset}: {rest.decode().split()}")
            result = second.commands.durable("job").wait(timeout=60)
            print(f"kept in the capsule: exit {result.exit_code}, stderr {result.stderr!r}")
            second.commands.durable("job").remove()
            second.close()
        finally:
            Capsule.destroy(capsule_id, **keys)
    print("done")


if __name__ == "__main__":
    main()
