"""wrenn.local's process wrapper, on its own: how it describes a process's end, and that
it never signals a pid it has already reaped (the number may be another process's now)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest

from wrenn.local._runtime import _host_process
from wrenn.local._runtime._host_process import HostProcess


def ended(exit_code: int, death_signal: int | None) -> HostProcess:
    proc = object.__new__(HostProcess)  # only the fields the description reads
    proc.exit_code = exit_code
    proc.death_signal = death_signal
    return proc


def test_a_signal_death_names_the_signal() -> None:
    assert ended(-1, signal.SIGKILL).describe_exit() == "was killed by SIGKILL"
    assert ended(-1, 200).describe_exit() == "was killed by signal 200"


def test_an_exit_gives_its_status() -> None:
    assert ended(3, None).describe_exit() == "exited with status 3"


def test_a_reaped_process_is_never_signalled(monkeypatch: pytest.MonkeyPatch) -> None:
    # A real child, exited and reaped, whose output pipes are still open (the window in
    # which ``exited`` is not set yet): its pid is free for the host to hand out again.
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    proc = object.__new__(HostProcess)
    proc.exited = asyncio.Event()
    proc._popen = child
    proc.host_pid = child.pid
    proc._target = child.pid
    proc._visible = 1
    sent: list[tuple[str, int, int]] = []
    fake_os = SimpleNamespace(
        killpg=lambda pid, sig: sent.append(("killpg", pid, sig)),
        kill=lambda pid, sig: sent.append(("kill", pid, sig)),
    )
    monkeypatch.setattr(_host_process, "os", fake_os)
    asyncio.run(proc.send_signal(signal.SIGKILL))
    proc.kill_now()
    assert sent == []
    # The same wrapper, not reaped yet, is signalled (the check above can fail).
    code, child.returncode = child.returncode, None
    try:
        asyncio.run(proc.send_signal(signal.SIGTERM))
    finally:
        child.returncode = code
    assert ("killpg", child.pid, signal.SIGTERM) in sent
    assert os.getpid() not in {pid for _, pid, _ in sent}
