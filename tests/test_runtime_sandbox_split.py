"""``Sandbox`` is the general interface only; host-process machinery is ``HostSandbox``.

A backend whose capsule processes are not host processes (a microVM's, through
its guest agent) must be able to subclass ``Sandbox`` without stubbing launch
argv, host pids or wrapper bookkeeping.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from wrenn.local._runtime import (
    INTERFACE,
    Capabilities,
    CapsuleProcess,
    CapsuleTerminal,
    Probe,
    Sandbox,
    Unsupported,
    Usage,
)

HOST_PID_MEMBERS = ("launch", "visible_pid", "member_pids", "on_spawn", "on_exit", "wrappers")


class _Minimal(Sandbox):
    """Only the general abstract methods, as a backend without host processes would."""

    kind = "minimal"
    CAPABILITIES = Capabilities(
        isolated=True,
        host_filesystem=False,
        memory_snapshots=False,
        limits=False,
        precheck_exec=False,
    )

    @classmethod
    def probe(cls) -> Probe:
        return Probe("a test double")

    async def _boot(self, prepare: Callable[[], Awaitable[None]] | None) -> None:
        pass

    def open_root(self) -> int:
        raise Unsupported("no host filesystem")

    async def destroy(self) -> None:
        pass

    @property
    def alive(self) -> bool:
        return False

    def kill_now(self) -> None:
        pass

    def start_process(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        *,
        want_pid: bool = True,
    ) -> CapsuleProcess:
        raise OSError("no processes")

    def open_terminal(
        self, argv: list[str], env: dict[str, str], cwd: str, cols: int, rows: int
    ) -> CapsuleTerminal:
        raise Unsupported("no terminals")

    async def usage(self) -> Usage:
        return Usage(0.0, 0, 0)

    async def freeze(self) -> None:
        pass

    async def thaw(self) -> None:
        pass

    @property
    def is_frozen(self) -> bool:
        return False


def _declared(cls: type, name: str) -> bool:
    return hasattr(cls, name) or any(
        name in vars(k).get("__annotations__", {}) for k in cls.__mro__
    )


def test_a_backend_needs_only_the_general_methods(tmp_path: Path) -> None:
    sandbox = _Minimal("cl-min", tmp_path, None)
    assert sandbox.capsule_id == "cl-min"
    assert not sandbox.capabilities.limits


def test_sandbox_declares_no_host_pid_members(tmp_path: Path) -> None:
    assert [name for name in HOST_PID_MEMBERS if _declared(Sandbox, name)] == []
    sandbox = _Minimal("cl-min", tmp_path, None)
    assert [name for name in HOST_PID_MEMBERS if hasattr(sandbox, name)] == []


def test_the_host_backends_get_the_host_machinery() -> None:
    from wrenn.local._runtime._bwrap import BwrapSandbox
    from wrenn.local._runtime._host import HostSandbox
    from wrenn.local._runtime._microvm import VmSandbox
    from wrenn.local._runtime._plain import PlainSandbox
    from wrenn.local._runtime._registry import BACKENDS

    assert set(BACKENDS.values()) == {VmSandbox, BwrapSandbox, PlainSandbox}
    for cls in (BwrapSandbox, PlainSandbox):
        assert issubclass(cls, HostSandbox), cls
    # The microVM's processes are the guest's: none of the host-pid machinery.
    assert not issubclass(VmSandbox, HostSandbox)
    assert [name for name in HOST_PID_MEMBERS if hasattr(VmSandbox, name)] == []
    # A host pty is the host backends' own: terminals in general are ``open_terminal``.
    assert not hasattr(Sandbox, "open_pty") and not hasattr(VmSandbox, "open_pty")
    assert hasattr(HostSandbox, "open_pty") and "open_pty" not in INTERFACE
    assert {"launch", "visible_pid", "member_pids"} <= HostSandbox.__abstractmethods__
    # Every interface member a backend must decide is abstract on Sandbox or given there.
    assert all(_declared(Sandbox, name) for name in INTERFACE)
