"""``wrenn.local``: an embedded, offline, Wrenn-compatible server.

Capsules are real local sandboxes (bubblewrap namespaces when available, plain
subprocesses otherwise).  Needs the ``local`` extra: starlette, uvicorn and
python-multipart.  See ``README.md`` in this package for the isolation modes and
the intentional differences from the hosted platform.
"""

from __future__ import annotations

from ._server import LocalServer

__all__ = ["LocalServer"]
