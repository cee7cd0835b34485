"""Pause/resume of a capsule's processes.

With a capsule cgroup (the server may create cgroups, e.g. as root) pause is the
cgroup v2 ``cgroup.freeze`` of that cgroup.  Every process of the capsule was
started inside it, so this freezes everything, including processes in nested
pid namespaces that a signal sweep over the capsule's own pid namespace would
miss, and the processes cannot observe or undo it.

Without one, every member pid gets SIGSTOP/SIGCONT; members are enumerated
repeatedly because a process may fork while we are stopping its siblings.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable

from ._cgroup import CapsuleCgroup

_ROUNDS = 6


class Freezer:
    """Freeze/thaw a capsule; ``extra_cont()`` pids get SIGCONT on thaw too."""

    def __init__(
        self,
        members: Callable[[], list[int]],
        cgroup: CapsuleCgroup | None,
        extra_cont: Callable[[], list[int]] | None = None,
    ) -> None:
        self._members = members
        self._cgroup = cgroup if cgroup is not None and cgroup.v2 is not None else None
        self._extra_cont = extra_cont or (lambda: [])
        self._stopped: set[int] = set()
        self.frozen = False

    @property
    def mode(self) -> str:
        return "cgroup" if self._cgroup is not None else "sigstop"

    def freeze(self) -> None:
        if self._cgroup is not None:
            self._cgroup.freeze()
        else:
            self._freeze_signals()
        self.frozen = True

    def thaw(self) -> None:
        if self._cgroup is not None:
            self._cgroup.thaw()
        else:
            for pid in set(self._members()) | self._stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            self._stopped.clear()
        # nsenter stops itself when its child stops; wake it or it never reaps the child.
        for pid in self._extra_cont():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.frozen = False

    def _freeze_signals(self) -> None:
        for _ in range(_ROUNDS):
            fresh = [p for p in self._members() if p not in self._stopped]
            if not fresh:
                break
            for pid in fresh:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
                self._stopped.add(pid)
