"""In-memory state of a capsule whose sandbox is up."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ._files import CapsuleFiles
from ._kernels import Kernel
from ._pty import PtySession
from ._runtime import CapsuleProcess, Sandbox


@dataclass
class Tracked:
    proc: CapsuleProcess
    pid: int
    tag: str | None
    cmd: str
    args: list[str]


@dataclass
class Live:
    sandbox: Sandbox
    fs: CapsuleFiles
    procs: dict[int, Tracked] = field(default_factory=dict)
    ptys: dict[str, PtySession] = field(default_factory=dict)
    kernels: dict[str, Kernel] = field(default_factory=dict)  # code runner, by kernel id
    kernel_start: asyncio.Lock = field(default_factory=asyncio.Lock)  # one kernel boots at a time
    cpu_prev: tuple[float, float] | None = None  # (monotonic, cpu seconds)
