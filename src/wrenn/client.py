"""The low-level clients, under the module path the official SDK uses."""

from __future__ import annotations

from ._async.capsules import AsyncCapsules
from ._async.client import AsyncWrennClient
from ._async.events import AsyncEvents, AsyncEventStream
from ._async.snapshots import AsyncSnapshots
from ._constants import (
    DEFAULT_BASE_URL,
    DEFAULT_PROXY_DOMAIN,
    ENV_API_KEY,
    ENV_BASE_URL,
    ENV_PROXY_DOMAIN,
)
from ._models_control import Capsule as CapsuleModel
from ._models_control import CapsuleMetrics, CapsuleStats, SSEEvent, Template, UsageResponse
from ._sync.capsules import Capsules
from ._sync.client import WrennClient
from ._sync.events import Events, EventStream
from ._sync.snapshots import Snapshots
from .exceptions import handle_response

# The official SDK's resource class names.
CapsulesResource = Capsules
AsyncCapsulesResource = AsyncCapsules
SnapshotsResource = Snapshots
AsyncSnapshotsResource = AsyncSnapshots
EventsResource = Events
AsyncEventsResource = AsyncEvents

# The official module's constants, models and helper are here too, as it imports them.
__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_PROXY_DOMAIN",
    "ENV_API_KEY",
    "ENV_BASE_URL",
    "ENV_PROXY_DOMAIN",
    "AsyncCapsules",
    "AsyncCapsulesResource",
    "AsyncEventStream",
    "AsyncEvents",
    "AsyncEventsResource",
    "AsyncSnapshots",
    "AsyncSnapshotsResource",
    "AsyncWrennClient",
    "CapsuleMetrics",
    "CapsuleModel",
    "CapsuleStats",
    "Capsules",
    "CapsulesResource",
    "EventStream",
    "Events",
    "EventsResource",
    "SSEEvent",
    "Snapshots",
    "SnapshotsResource",
    "Template",
    "UsageResponse",
    "WrennClient",
    "handle_response",
]
