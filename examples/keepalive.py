"""keepalive=True: a lease for the length of one call, so a capsule does not pause mid-job."""

from __future__ import annotations

from collections.abc import Iterator

from _backend import backend

from wrenn import Capsule


def chunks() -> Iterator[bytes]:
    for _ in range(64):  # on the platform this could be gigabytes and many minutes
        yield b"z" * 16384


def main() -> None:
    with backend() as keys, Capsule(timeout=120, **keys) as capsule:
        capsule.files.upload_stream("/root/data.bin", chunks(), keepalive=True)
        size = 0
        with capsule.files.download_stream("/root/data.bin", keepalive=True) as download:
            for chunk in download:
                size += len(chunk)
        print(f"moved {size} bytes each way with the capsule kept awake")
        result = capsule.commands.run("sleep 1; wc -c < /root/data.bin", keepalive=True)
        print(f"a quiet command, leased: {result.stdout.strip()} bytes")
        with capsule.pty(keepalive=True) as terminal:
            print(f"a leased terminal: pid {terminal.pid}")
        print(f"still {capsule.get_info().status}")
    print("done")


if __name__ == "__main__":
    main()
