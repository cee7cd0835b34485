"""Terminal (PTY) sessions and their events, under the module path the official SDK uses."""

from __future__ import annotations

from ._async.pty import AsyncPtySession
from ._pty import PtyEvent, PtyEventType
from ._sync.pty import PtySession

__all__ = ["AsyncPtySession", "PtyEvent", "PtyEventType", "PtySession"]
