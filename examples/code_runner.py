"""The code runner: a persistent Python kernel in a capsule, from blocking code and from asyncio.

Against wrenn.local this needs the kernel extra: pip install 'wrenn[local-code-runner]'.
"""

from __future__ import annotations

import asyncio

from _backend import backend

from wrenn.code_runner import AsyncCapsule, Capsule


def blocking(keys: dict[str, str]) -> None:
    with Capsule(**keys) as capsule:
        capsule.run_code("import math\nradius = 2")
        area = capsule.run_code("print('computing')\nround(math.pi * radius**2, 3)")
        print(f"area: {area.text} (cell {area.execution_count}), stdout: {area.logs.stdout}")

        failed = capsule.run_code("1 / 0")
        assert failed.error is not None
        print(f"error: {failed.error.name}: {failed.error.value}")

        # A cell that outlives its timeout is interrupted; the kernel stays usable.
        slow = capsule.run_code("import time\ntime.sleep(60)", timeout=1)
        print(f"timed out: {slow.timed_out} ({slow.error.name if slow.error else None})")
        print(f"still there: radius = {capsule.run_code('radius').text}")


async def concurrent(keys: dict[str, str]) -> None:
    async def square(n: int) -> str | None:
        async with await AsyncCapsule.create(**keys) as capsule:
            chunks: list[str] = []
            execution = await capsule.run_code(
                f"print('squaring {n}')\n{n} ** 2", on_stdout=chunks.append
            )
            return f"{execution.text} (streamed {chunks})"

    print("in parallel:", await asyncio.gather(*(square(n) for n in range(3))))


def main() -> None:
    with backend() as keys:
        blocking(keys)
        asyncio.run(concurrent(keys))
    print("done")


if __name__ == "__main__":
    main()
