"""Files in a capsule: write, read, list, stream large files in bounded memory."""

from __future__ import annotations

from collections.abc import Iterator

from _backend import backend

from wrenn import Capsule


def chunks(count: int, size: int) -> Iterator[bytes]:
    for index in range(count):
        yield bytes([index % 256]) * size


def main() -> None:
    with backend() as keys, Capsule(**keys) as capsule:
        files = capsule.files
        files.make_dir("/workspace/data")
        files.write("/workspace/data/hello.txt", "hello, capsule\n")
        print(f"read back: {files.read('/workspace/data/hello.txt').strip()!r}")
        print(f"listing: {[(e.name, e.type, e.size) for e in files.list('/workspace/data')]}")
        print(
            f"exists: {files.exists('/workspace/data/hello.txt')}, missing: {files.exists('/nope/x')}"
        )

        files.upload_stream("/workspace/data/big.bin", chunks(64, 64 * 1024))  # 4 MiB, streamed
        received = 0
        with files.download_stream("/workspace/data/big.bin") as download:
            for part in download:
                received += len(part)
        print(f"streamed 4 MiB up and {received} bytes back down")

        files.remove("/workspace/data")
        print(f"removed: exists now {files.exists('/workspace/data')}")
    print("done")


if __name__ == "__main__":
    main()
