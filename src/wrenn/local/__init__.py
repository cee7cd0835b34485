"""``wrenn.local``: an embedded, offline, Wrenn-compatible server.

Capsules are real local sandboxes (bubblewrap namespaces when available, plain
subprocesses otherwise).  Needs the ``local`` extra: starlette, uvicorn and
python-multipart.  It follows API 0.2.2, asynchronous lifecycle included; for
tests of clients, ``LocalServer(transition_delay=...)`` makes each transitional
status (``starting``, ``pausing``, ...) last that many seconds, and
``server.faults`` injects deterministic failures (``Respond``, ``Reset``,
``Delay``, ``CutStream``, ``SlowTransition``, ``DiskFull``).  See
``README.md`` in this package for the isolation modes and the intentional
differences from the hosted platform.
"""

from __future__ import annotations

from ._faults import CutStream, Delay, DiskFull, Fault, Faults, Reset, Respond, SlowTransition
from ._server import LocalServer

__all__ = [
    "CutStream",
    "Delay",
    "DiskFull",
    "Fault",
    "Faults",
    "LocalServer",
    "Reset",
    "Respond",
    "SlowTransition",
]
