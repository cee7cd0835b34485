"""Isolation backends for local capsules, behind one interface (``Sandbox``).

Code outside this package uses a sandbox only through the members in
``INTERFACE``, a process it started (a ``CapsuleProcess``) only through
those in ``PROCESS_INTERFACE`` and a terminal (a ``CapsuleTerminal``) only
through those in ``TERMINAL_INTERFACE``, and picks a backend only through the registry
(``_registry``).
"""

from __future__ import annotations

from ._base import INTERFACE, Sandbox
from ._contract import BootError, Capabilities, HostPaths, Launch, Probe, Unsupported, Usage
from ._process import PROCESS_INTERFACE, CapsuleProcess, add_listener
from ._registry import Backend, choose_backend, isolation_choices, lookup, register
from ._terminal import TERMINAL_INTERFACE, CapsuleTerminal

__all__ = [
    "INTERFACE",
    "PROCESS_INTERFACE",
    "TERMINAL_INTERFACE",
    "Backend",
    "BootError",
    "Capabilities",
    "CapsuleProcess",
    "CapsuleTerminal",
    "HostPaths",
    "Launch",
    "Probe",
    "Sandbox",
    "Unsupported",
    "Usage",
    "add_listener",
    "choose_backend",
    "isolation_choices",
    "lookup",
    "register",
]
