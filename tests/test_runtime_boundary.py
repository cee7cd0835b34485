"""wrenn.local talks to its isolation backends through one interface.

Outside ``wrenn/local/_runtime`` a sandbox is used only through the members in
``_runtime.INTERFACE`` (the manager, files, PTY, processes, metrics and kernels
alike), a process it started only through those in ``_runtime.PROCESS_INTERFACE``
and never as a host process (no ``subprocess``, no signalling of host pids), and a
backend is picked only through the registry: no module imports a backend's own module.  Read as tokens and text, not parsed: CPython 3.11's ast
can race a traceback formatted in another thread (a server of an earlier test).
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

from wrenn.local._runtime import (
    INTERFACE,
    PROCESS_INTERFACE,
    TERMINAL_INTERFACE,
    CapsuleProcess,
    CapsuleTerminal,
    Sandbox,
)

LOCAL = Path(__file__).resolve().parents[1] / "src" / "wrenn" / "local"
# The names a sandbox goes by outside the runtime.
SANDBOX_NAMES = {"sandbox", "_sandbox"}
# The names a capsule process goes by outside the runtime (``tracked.proc``, ``self._proc``).
PROCESS_NAMES = {"proc", "_proc"}
# The names a terminal goes by outside the runtime (``self._terminal`` in a PTY session).
TERMINAL_NAMES = {"terminal", "_terminal"}
# The backends themselves, and how one is picked; only the registry imports them.
BACKEND_MODULES = ("_bwrap", "_plain", "_probe", "_base", "_host", "_host_terminal", "_microvm")
ANNOTATED = re.compile(r"\b(\w+)\s*:\s*(?:_runtime\.)?Sandbox\b")
IMPORT = re.compile(r"^\s*(?:from|import)\s+[\w.]*_runtime\.(\w+)", re.M)
PROCESS_ANNOTATED = re.compile(r"\b(\w+)\s*:\s*(?:_runtime\.)?CapsuleProcess\b")
STARTED = re.compile(r"\b(\w+)\s*=\s*[\w.]*\.start_process\(")
# Names that start, wait for or signal host processes: only a backend may (a
# microVM backend's processes are no host processes at all).
HOST_PROCESS_NAMES = {
    "subprocess",
    "Popen",
    "create_subprocess_exec",
    "create_subprocess_shell",
    "ManagedProcess",
    "HostProcess",
    "_host_process",
}
HOST_PROCESS_CALLS = {
    "kill",
    "killpg",
    "fork",
    "forkpty",
    "posix_spawn",
    "posix_spawnp",
    "pidfd_open",
    "waitpid",
    "system",
    "popen",
}


def _modules() -> list[Path]:
    return sorted(LOCAL.glob("*.py"))


def _tokens(text: str) -> list[tokenize.TokenInfo]:
    return [
        t
        for t in tokenize.generate_tokens(io.StringIO(text).readline)
        if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT)
    ]


def members_of(text: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, member) for every ``name.member`` / ``x.name.member`` in ``text``."""
    tokens = _tokens(text)
    found = []
    for first, dot, member in zip(tokens, tokens[1:], tokens[2:], strict=False):
        if (
            first.type == tokenize.NAME
            and first.string in names
            and dot.string == "."
            and member.type == tokenize.NAME
        ):
            found.append((member.start[0], member.string))
    return found


def sandbox_members(text: str) -> list[tuple[int, str]]:
    return members_of(text, SANDBOX_NAMES)


def host_process_uses(text: str) -> list[tuple[int, str]]:
    """(line, name) for every host-process name, and every ``os.<call>`` that
    starts, reaps or signals a host process, in ``text`` (code only)."""
    found = [
        (t.start[0], t.string)
        for t in _tokens(text)
        if t.type == tokenize.NAME and t.string in HOST_PROCESS_NAMES
    ]
    found += [
        (line, f"os.{member}")
        for line, member in members_of(text, {"os"})
        if member in HOST_PROCESS_CALLS
    ]
    return sorted(found)


def test_code_outside_the_runtime_uses_only_the_interface() -> None:
    offenders = [
        f"{path.name}:{line}: sandbox.{member}"
        for path in _modules()
        for line, member in sandbox_members(path.read_text())
        if member not in INTERFACE
    ]
    assert offenders == []


def test_code_outside_the_runtime_uses_processes_only_through_their_interface() -> None:
    offenders = [
        f"{path.name}:{line}: proc.{member}"
        for path in _modules()
        for line, member in members_of(path.read_text(), PROCESS_NAMES)
        if member not in PROCESS_INTERFACE
    ]
    assert offenders == []


def test_code_outside_the_runtime_uses_terminals_only_through_their_interface() -> None:
    offenders = [
        f"{path.name}:{line}: terminal.{member}"
        for path in _modules()
        for line, member in members_of(path.read_text(), TERMINAL_NAMES)
        if member not in TERMINAL_INTERFACE
    ]
    assert offenders == []


def test_the_terminal_interface_is_declared_and_implemented() -> None:
    from wrenn.local._runtime._host_terminal import HostTerminal
    from wrenn.local._vm._terminal import VmTerminal

    for cls in (CapsuleTerminal, HostTerminal, VmTerminal):
        missing = sorted(name for name in TERMINAL_INTERFACE if not _declared(cls, name))
        assert missing == [], cls
        assert cls is CapsuleTerminal or cls.__abstractmethods__ == frozenset()


def test_only_the_runtime_runs_host_processes() -> None:
    offenders = [
        f"{path.name}:{line}: {name}"
        for path in _modules()
        for line, name in host_process_uses(path.read_text())
    ]
    assert offenders == []


def test_processes_go_by_the_scanned_names() -> None:
    offenders = [
        f"{path.name}: {name}"
        for path in _modules()
        for pattern in (PROCESS_ANNOTATED, STARTED)
        for name in pattern.findall(path.read_text())
        if name not in PROCESS_NAMES
    ]
    assert offenders == []


def _declared(cls: type, name: str) -> bool:
    """A member of the class, or an attribute annotated on it (set per instance)."""
    return hasattr(cls, name) or any(
        name in vars(k).get("__annotations__", {}) for k in cls.__mro__
    )


def test_the_interface_is_declared_on_every_backend() -> None:
    from wrenn.local._runtime._registry import BACKENDS

    assert set(BACKENDS) >= {"bwrap", "none"}
    for cls in (Sandbox, *BACKENDS.values()):
        missing = sorted(name for name in INTERFACE if not _declared(cls, name))
        assert missing == [], cls
    for cls in BACKENDS.values():
        assert cls.__abstractmethods__ == frozenset(), cls
        assert cls.kind in BACKENDS and BACKENDS[cls.kind] is cls


def test_the_process_interface_is_declared_and_implemented() -> None:
    from wrenn.local._runtime._host_process import HostProcess

    for cls in (CapsuleProcess, HostProcess):
        missing = sorted(name for name in PROCESS_INTERFACE if not _declared(cls, name))
        assert missing == [], cls
    assert HostProcess.__abstractmethods__ == frozenset()


def test_sandboxes_go_by_the_scanned_names() -> None:
    # A sandbox held under another name would slip past the member scan.
    offenders = [
        f"{path.name}: {name}"
        for path in _modules()
        for name in ANNOTATED.findall(path.read_text())
        if name not in SANDBOX_NAMES
    ]
    assert offenders == []


def test_no_module_outside_the_runtime_imports_a_backend() -> None:
    offenders = [
        f"{path.name}: _runtime.{module}"
        for path in _modules()
        for module in IMPORT.findall(path.read_text())
        if module in BACKEND_MODULES
    ]
    assert offenders == []


def test_the_scans_see_what_they_look_for() -> None:
    text = (
        "x = live.sandbox.freezer.frozen\n"
        "self._sandbox.wrappers.discard(1)  # sandbox.comment\n"
        "s = 'sandbox.in_a_string'\n"
        "sandbox.boot()\n"
    )
    assert sandbox_members(text) == [(1, "freezer"), (2, "wrappers"), (4, "boot")]
    assert ANNOTATED.findall("def f(sb: Sandbox, sandbox: _runtime.Sandbox) -> None:") == [
        "sb",
        "sandbox",
    ]
    imports = "from ._runtime._bwrap import PTY_MAX\nfrom ._runtime import Backend\n"
    assert IMPORT.findall(imports) == ["_bwrap"]
    procs = "await tracked.proc.send_signal(9)\nself._proc.hold_output()  # proc.x\n"
    assert members_of(procs, PROCESS_NAMES) == [(1, "send_signal"), (2, "hold_output")]
    host = (
        "import subprocess\n"
        "p = ManagedProcess(sandbox, argv)\n"
        "os.killpg(pid, 9)  # os.kill in a comment\n"
        "log('plain subprocesses')\n"
        "os.getpid()\n"
    )
    assert host_process_uses(host) == [
        (1, "subprocess"),
        (2, "ManagedProcess"),
        (3, "os.killpg"),
    ]
    assert PROCESS_ANNOTATED.findall(
        "def f(p: CapsuleProcess, proc: _runtime.CapsuleProcess):"
    ) == [
        "p",
        "proc",
    ]
    assert STARTED.findall(
        "self.proc = sandbox.start_process(a)\nq = live.sandbox.start_process("
    ) == [
        "proc",
        "q",
    ]
