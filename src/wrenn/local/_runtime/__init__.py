"""Isolation backends for local capsules (bubblewrap namespaces, or plain subprocesses)."""

from __future__ import annotations

from ._base import Launch, Sandbox
from ._probe import Backend, choose_backend

__all__ = ["Backend", "Launch", "Sandbox", "choose_backend"]
