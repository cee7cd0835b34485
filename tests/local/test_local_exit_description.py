"""How wrenn.local describes a process's end in its own messages (a kernel that failed to
start says which signal killed it: the API's exit status for a signal death is -1)."""

from __future__ import annotations

import signal

from wrenn.local._proc import ManagedProcess


def ended(exit_code: int, death_signal: int | None) -> ManagedProcess:
    proc = object.__new__(ManagedProcess)  # only the fields the description reads
    proc.exit_code = exit_code
    proc.death_signal = death_signal
    return proc


def test_a_signal_death_names_the_signal() -> None:
    assert ended(-1, signal.SIGKILL).describe_exit() == "was killed by SIGKILL"
    assert ended(-1, 200).describe_exit() == "was killed by signal 200"


def test_an_exit_gives_its_status() -> None:
    assert ended(3, None).describe_exit() == "exited with status 3"
