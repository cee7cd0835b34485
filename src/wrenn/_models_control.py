"""Wire models of the control plane: capsules, templates, usage and metrics, events.

With their reused decoders. The bases and the rules they share are in ``_models_base``.
"""

from __future__ import annotations

import datetime as _dt

import msgspec

from ._models_base import _Model, _OpenEnum, _Request

__all__ = [
    "Actor",
    "ActorType",
    "Capsule",
    "CapsuleMetrics",
    "CapsuleStats",
    "CreateCapsuleRequest",
    "CreateSnapshotRequest",
    "Current",
    "Event",
    "MetricPoint",
    "MetricsRange",
    "Outcome",
    "Peaks",
    "Point",
    "Range",
    "Range1",
    "Resource",
    "SSEEvent",
    "Series",
    "StatsRange",
    "Status",
    "Template",
    "TemplateType",
    "Type",
    "Type2",
    "UsageResponse",
]


class Status(_OpenEnum):
    """Capsule status. Unknown future values are kept as their raw string."""

    pending = "pending"
    starting = "starting"
    running = "running"
    pausing = "pausing"
    paused = "paused"
    snapshotting = "snapshotting"
    resuming = "resuming"
    stopping = "stopping"
    hibernated = "hibernated"
    stopped = "stopped"
    missing = "missing"
    error = "error"


class TemplateType(_OpenEnum):
    """Template kind: a platform base image or a team snapshot."""

    base = "base"
    snapshot = "snapshot"


class ActorType(_OpenEnum):
    """Who caused an event."""

    user = "user"
    api_key = "api_key"
    system = "system"


class Event(_OpenEnum):
    """Kind of a server-sent event."""

    connected = "connected"
    capsule_create = "capsule.create"
    capsule_pause = "capsule.pause"
    capsule_resume = "capsule.resume"
    capsule_destroy = "capsule.destroy"
    capsule_state_changed = "capsule.state.changed"
    template_snapshot_create = "template.snapshot.create"
    template_snapshot_delete = "template.snapshot.delete"
    host_up = "host.up"
    host_down = "host.down"


class Outcome(_OpenEnum):
    """Result of the action an event reports."""

    success = "success"
    error = "error"


class StatsRange(_OpenEnum):
    """Window of ``capsules.stats``."""

    field_5m = "5m"
    field_1h = "1h"
    field_6h = "6h"
    field_24h = "24h"
    field_30d = "30d"


class MetricsRange(_OpenEnum):
    """Window of ``capsules.metrics``."""

    field_5m = "5m"
    field_10m = "10m"
    field_1h = "1h"
    field_2h = "2h"
    field_6h = "6h"
    field_12h = "12h"
    field_24h = "24h"


# The official SDK's generated names for the same enums.
Type = TemplateType
Type2 = ActorType
Range = StatsRange
Range1 = MetricsRange


class Capsule(_Model, kw_only=True, frozen=True, gc=False):
    """A capsule as the control plane reports it."""

    id: str
    status: Status | None = None
    template: str | None = None
    vcpus: int | None = None
    memory_mb: int | None = None
    timeout_sec: int | None = None
    created_at: _dt.datetime | None = None
    started_at: _dt.datetime | None = None
    last_active_at: _dt.datetime | None = None
    last_updated: _dt.datetime | None = None
    metadata: dict[str, str] | None = None
    disk_size_mb: int | None = None
    disk_used_mb: int | None = None
    guest_ip: str | None = None
    host_ip: str | None = None


class Template(_Model, kw_only=True, frozen=True, gc=False):
    """A template capsules boot from: a platform base image or a team snapshot."""

    name: str
    type: TemplateType | None = None
    vcpus: int | None = None
    memory_mb: int | None = None
    size_bytes: int | None = None
    created_at: _dt.datetime | None = None
    platform: bool | None = None
    protected: bool | None = None
    metadata: dict[str, str] | None = None


class Current(_Model, kw_only=True, frozen=True, gc=False):
    running_count: int | None = None
    vcpus_reserved: int | None = None
    memory_mb_reserved: int | None = None
    sampled_at: _dt.datetime | None = None


class Peaks(_Model, kw_only=True, frozen=True, gc=False):
    running_count: int | None = None
    vcpus: int | None = None
    memory_mb: int | None = None


class Series(_Model, kw_only=True, frozen=True, gc=False):
    labels: list[_dt.datetime] | None = None
    running: list[int] | None = None
    vcpus: list[int] | None = None
    memory_mb: list[int] | None = None


class CapsuleStats(_Model, kw_only=True, frozen=True, gc=False):
    """Team-wide capsule counts and reservations over a window."""

    range: StatsRange | None = None
    current: Current | None = None
    peaks: Peaks | None = None
    series: Series | None = None


class Point(_Model, kw_only=True, frozen=True, gc=False):
    date: _dt.date | None = None
    cpu_minutes: float | None = None
    ram_mb_minutes: float | None = None


class UsageResponse(_Model, kw_only=True, frozen=True, gc=False):
    """Daily CPU and memory usage between two dates."""

    from_: _dt.date | None = msgspec.field(default=None, name="from")
    to: _dt.date | None = None
    points: list[Point] | None = None


class MetricPoint(_Model, kw_only=True, frozen=True, gc=False):
    timestamp_unix: int | None = None
    cpu_pct: float | None = None
    mem_bytes: int | None = None
    disk_bytes: int | None = None


class CapsuleMetrics(_Model, kw_only=True, frozen=True, gc=False):
    """Resource samples of one capsule."""

    sandbox_id: str | None = None
    range: MetricsRange | None = None
    points: list[MetricPoint] | None = None


class Resource(_Model, kw_only=True, frozen=True, gc=False):
    id: str | None = None
    type: str | None = None


class Actor(_Model, kw_only=True, frozen=True, gc=False):
    type: ActorType | None = None
    id: str | None = None
    name: str | None = None


class SSEEvent(_Model, kw_only=True, frozen=True, gc=False):
    """One server-sent event of ``events.stream()``."""

    event: Event
    outcome: Outcome | None = None
    resource: Resource | None = None
    actor: Actor | None = None
    metadata: dict[str, str] | None = None
    error: str | None = None
    sandbox: Capsule | None = None
    timestamp: _dt.datetime | None = None


# --- request bodies (unset fields are not sent) -------------------------------------


class CreateCapsuleRequest(_Request, kw_only=True):
    template: str | None = None
    vcpus: int | None = None
    memory_mb: int | None = None
    timeout_sec: int | None = None
    metadata: dict[str, str] | None = None


class CreateSnapshotRequest(_Request, kw_only=True):
    sandbox_id: str
    name: str | None = None


# Decoders are built once and reused: building one compiles a type-specific parser.
capsule_decoder = msgspec.json.Decoder(Capsule)
capsule_list_decoder = msgspec.json.Decoder(list[Capsule])
template_decoder = msgspec.json.Decoder(Template)
template_list_decoder = msgspec.json.Decoder(list[Template])
stats_decoder = msgspec.json.Decoder(CapsuleStats)
usage_decoder = msgspec.json.Decoder(UsageResponse)
metrics_decoder = msgspec.json.Decoder(CapsuleMetrics)
sse_event_decoder = msgspec.json.Decoder(SSEEvent)
