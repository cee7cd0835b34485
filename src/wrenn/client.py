"""The low-level clients, under the module path the official SDK uses."""

from __future__ import annotations

from ._async.capsules import AsyncCapsules
from ._async.client import AsyncWrennClient
from ._async.events import AsyncEvents, AsyncEventStream
from ._async.snapshots import AsyncSnapshots
from ._sync.capsules import Capsules
from ._sync.client import WrennClient
from ._sync.events import Events, EventStream
from ._sync.snapshots import Snapshots

# The official SDK's resource class names.
CapsulesResource = Capsules
AsyncCapsulesResource = AsyncCapsules
SnapshotsResource = Snapshots
AsyncSnapshotsResource = AsyncSnapshots
EventsResource = Events
AsyncEventsResource = AsyncEvents

__all__ = [
    "AsyncCapsules",
    "AsyncCapsulesResource",
    "AsyncEventStream",
    "AsyncEvents",
    "AsyncEventsResource",
    "AsyncSnapshots",
    "AsyncSnapshotsResource",
    "AsyncWrennClient",
    "Capsules",
    "CapsulesResource",
    "EventStream",
    "Events",
    "EventsResource",
    "Snapshots",
    "SnapshotsResource",
    "WrennClient",
]
