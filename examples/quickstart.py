"""Quick start: the Wrenn SDK against the embedded local server, no account needed.

Run it with `bash scripts/quickstart.sh` (installs what is missing), or
`python examples/quickstart.py` once `wrenn[local]` is installed. Set
WRENN_API_KEY / WRENN_BASE_URL to run the same steps against the platform instead.
"""

from __future__ import annotations

from _backend import backend

from wrenn import Capsule, WrennClient


def main() -> None:
    with backend() as keys:
        with Capsule(template="minimal", **keys) as capsule:
            print(f"1. created capsule {capsule.capsule_id}")

            result = capsule.commands.run("echo hello from $(hostname); uname -s")
            print(f"2. ran a command: exit {result.exit_code}, output {result.stdout.strip()!r}")

            capsule.files.write("/root/notes.txt", "written before the snapshot\n")
            print(f"3. wrote and read a file: {capsule.files.read('/root/notes.txt').strip()!r}")

            print(f"4. paused: {capsule.pause().status}; resumed: {capsule.resume().status}")

            template = capsule.create_snapshot(name="quickstart-snapshot", overwrite=True)
            print(f"5. snapshotted into template {template.name!r} ({template.size_bytes} bytes)")

            with Capsule(template=template.name, **keys) as second:
                seen = second.files.read("/root/notes.txt").strip()
                print(f"6. booted {second.capsule_id} from the snapshot; it sees: {seen!r}")
            print("7. destroyed the second capsule")
        print("8. destroyed the first capsule")

        with WrennClient(**keys) as client:
            client.snapshots.delete(template.name)
            print(f"9. deleted template {template.name!r}; done")


if __name__ == "__main__":
    main()
