"""msgspec Structs for every wire shape of the Wrenn API, and their reused decoders.

Forward compatible by construction: unknown fields are ignored, and an enum value the
SDK does not know yet (a new capsule status, template type, file type or event kind)
is kept as its raw string instead of failing the whole response.
"""

from __future__ import annotations

import datetime as _dt
import enum
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal, TypeVar

import msgspec

from ._exceptions import ModelValidationError as ModelValidationError

__all__ = [
    "Actor",
    "ActorType",
    "BackgroundExecResponse",
    "Capsule",
    "CapsuleMetrics",
    "CapsuleStats",
    "CreateCapsuleRequest",
    "CreateSnapshotRequest",
    "Current",
    "Encoding",
    "Error",
    "Error1",
    "Event",
    "ExecRequest",
    "ExecResponse",
    "FileEntry",
    "FileType",
    "ListDirRequest",
    "ListDirResponse",
    "MakeDirRequest",
    "MakeDirResponse",
    "MetricPoint",
    "MetricsRange",
    "ModelValidationError",
    "Outcome",
    "Peaks",
    "Point",
    "ProcessEntry",
    "ProcessListResponse",
    "Range",
    "Range1",
    "ReadFileRequest",
    "RemoveRequest",
    "Resource",
    "SSEEvent",
    "Series",
    "StatsRange",
    "Status",
    "Template",
    "TemplateType",
    "Type",
    "Type1",
    "Type2",
    "UsageResponse",
]


class _OpenEnum(str, enum.Enum):
    """A string enum that keeps values it does not know instead of rejecting them.

    ``Status("migrating")`` returns a member-like value that equals the string
    ``"migrating"`` and differs from every known constant.
    """

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if not isinstance(value, str):
            return None
        unknown = str.__new__(cls, value)
        unknown._name_ = value
        unknown._value_ = value
        return unknown

    def __str__(self) -> str:
        return str(self.value)


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


class FileType(_OpenEnum):
    """Kind of a file-system entry."""

    file = "file"
    directory = "directory"
    symlink = "symlink"
    unknown = "unknown"


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


class Encoding(_OpenEnum):
    """Encoding of exec output: text, or base64 when either stream was not valid UTF-8."""

    utf_8 = "utf-8"
    base64 = "base64"


# The official SDK's generated names for the same enums.
Type = TemplateType
Type1 = FileType
Type2 = ActorType
Range = StatsRange
Range1 = MetricsRange


M = TypeVar("M", bound="_Model")
_FieldSelection = Collection[str] | Mapping[str, Any] | None
_FIELDS: dict[type, tuple[msgspec.structs.FieldInfo, ...]] = {}
_DECODERS: dict[tuple[type, bool], msgspec.json.Decoder[Any]] = {}


def _fields(cls: type) -> tuple[msgspec.structs.FieldInfo, ...]:
    fields = _FIELDS.get(cls)
    if fields is None:
        fields = _FIELDS[cls] = msgspec.structs.fields(cls)
    return fields


def _dump_value(value: Any, options: tuple[bool, bool, bool]) -> Any:
    if isinstance(value, _Model):
        return _dump_model(value, options, None, None)
    if isinstance(value, list):
        return [_dump_value(item, options) for item in value]
    if isinstance(value, dict):
        return {key: _dump_value(item, options) for key, item in value.items()}
    return value


def _dump_model(
    model: _Model,
    options: tuple[bool, bool, bool],
    include: _FieldSelection,
    exclude: _FieldSelection,
) -> dict[str, Any]:
    by_alias, exclude_none, exclude_defaults = options
    result: dict[str, Any] = {}
    for field in _fields(type(model)):
        name = field.name
        if (include is not None and name not in include) or (
            exclude is not None and name in exclude
        ):
            continue
        value = getattr(model, name)
        if exclude_none and value is None:
            continue
        if exclude_defaults and _is_default(field, value):
            continue
        result[field.encode_name if by_alias else name] = _dump_value(value, options)
    return result


def _is_default(field: msgspec.structs.FieldInfo, value: Any) -> bool:
    if field.default is not msgspec.NODEFAULT:
        return bool(value == field.default)
    factory: Callable[[], Any] | Any = field.default_factory
    if factory is not msgspec.NODEFAULT and callable(factory):
        return bool(value == factory())
    return False


def _invalid(cls: type, exc: msgspec.MsgspecError) -> ModelValidationError:
    return ModelValidationError(f"invalid {cls.__name__}: {exc}")


class _Model(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """Base of response models: keyword-only, immutable, cheap to allocate.

    Besides ``to_dict()``, the models offer the pydantic methods code written against
    the official SDK (whose models are pydantic's) calls: ``model_dump()``,
    ``model_dump_json()``, ``model_copy()``, ``model_validate()`` and
    ``model_validate_json()``.
    """

    def to_dict(self) -> dict[str, Any]:
        """Return the model as plain JSON-compatible Python data."""
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]

    def model_dump(
        self,
        *,
        mode: Literal["python", "json"] | str = "python",
        include: _FieldSelection = None,
        exclude: _FieldSelection = None,
        by_alias: bool | None = None,
        exclude_unset: bool = False,
        exclude_defaults: bool = False,
        exclude_none: bool = False,
    ) -> dict[str, Any]:
        """The model as a dict keyed by field name, as pydantic's ``model_dump()``.

        ``mode="python"`` (the default) keeps datetimes, dates and enum members as they
        are; ``mode="json"`` gives only JSON types (ISO 8601 strings, enum values).
        ``by_alias=True`` uses the wire names (``from`` for ``UsageResponse.from_``).
        ``include``/``exclude`` select top-level fields. msgspec does not record which
        fields the server sent, so ``exclude_unset`` leaves out fields that hold their
        default, like ``exclude_defaults``.
        """
        if mode not in ("python", "json"):
            raise ValueError(f"mode must be 'python' or 'json', not {mode!r}")
        options = (bool(by_alias), exclude_none, exclude_defaults or exclude_unset)
        result = _dump_model(self, options, include, exclude)
        if mode == "json":
            return msgspec.to_builtins(result)  # type: ignore[no-any-return]
        return result

    def model_dump_json(
        self,
        *,
        indent: int | None = None,
        include: _FieldSelection = None,
        exclude: _FieldSelection = None,
        by_alias: bool | None = None,
        exclude_unset: bool = False,
        exclude_defaults: bool = False,
        exclude_none: bool = False,
    ) -> str:
        """The model as a JSON string, as pydantic's ``model_dump_json()``."""
        data = self.model_dump(
            mode="json",
            include=include,
            exclude=exclude,
            by_alias=by_alias,
            exclude_unset=exclude_unset,
            exclude_defaults=exclude_defaults,
            exclude_none=exclude_none,
        )
        encoded = msgspec.json.encode(data)
        if indent is not None:
            encoded = msgspec.json.format(encoded, indent=indent)
        return encoded.decode()

    def model_copy(self: M, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> M:
        """A copy with some fields replaced (models are immutable, so a copy is never needed to
        protect one; ``deep`` is accepted for pydantic compatibility)."""
        return msgspec.structs.replace(self, **dict(update or {}))

    @classmethod
    def model_validate(
        cls: type[M],
        obj: Any,
        *,
        strict: bool | None = None,
        from_attributes: bool | None = None,
        context: Any = None,
    ) -> M:
        """Build the model from a dict (wire names or field names), as pydantic's ``model_validate()``.

        Values are coerced as pydantic's lax mode does (``"2"`` for an int, an ISO 8601
        string for a datetime) unless ``strict=True``; ``from_attributes=True`` reads
        an object's attributes. ``context`` is accepted and unused. Raises
        ``ModelValidationError`` (a ``ValueError``).
        """
        if isinstance(obj, cls):
            return obj
        if isinstance(obj, Mapping):
            renamed = [f for f in _fields(cls) if f.name != f.encode_name]
            if renamed:
                obj = dict(obj)
                for field in renamed:
                    if field.name in obj and field.encode_name not in obj:
                        obj[field.encode_name] = obj.pop(field.name)
        try:
            return msgspec.convert(
                obj, cls, strict=bool(strict), from_attributes=bool(from_attributes)
            )
        except msgspec.MsgspecError as exc:
            raise _invalid(cls, exc) from exc

    @classmethod
    def model_validate_json(
        cls: type[M],
        json_data: str | bytes | bytearray,
        *,
        strict: bool | None = None,
        context: Any = None,
    ) -> M:
        """Build the model from JSON text, as pydantic's ``model_validate_json()``.

        Raises ``ModelValidationError`` (a ``ValueError``) for invalid JSON or data.
        """
        if any(f.name != f.encode_name for f in _fields(cls)):
            # A field renamed on the wire (``from_``/``from``): accept either name, so
            # ``model_validate_json(model.model_dump_json())`` round-trips.
            try:
                data = msgspec.json.decode(json_data)
            except msgspec.MsgspecError as exc:
                raise _invalid(cls, exc) from exc
            return cls.model_validate(data, strict=strict)
        key = (cls, bool(strict))
        decoder = _DECODERS.get(key)
        if decoder is None:
            decoder = _DECODERS[key] = msgspec.json.Decoder(cls, strict=bool(strict))
        try:
            result: M = decoder.decode(json_data)
        except msgspec.MsgspecError as exc:
            raise _invalid(cls, exc) from exc
        return result


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


class ExecResponse(_Model, kw_only=True, frozen=True, gc=False):
    sandbox_id: str | None = None
    cmd: str | None = None
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    duration_ms: int | None = None
    encoding: Encoding | None = None


class BackgroundExecResponse(_Model, kw_only=True, frozen=True, gc=False):
    sandbox_id: str | None = None
    cmd: str | None = None
    pid: int
    tag: str | None = None


class ProcessEntry(_Model, kw_only=True, frozen=True, gc=False):
    pid: int
    tag: str | None = None
    cmd: str | None = None
    args: list[str] | None = None


class ProcessListResponse(_Model, kw_only=True, frozen=True, gc=False):
    processes: list[ProcessEntry] = msgspec.field(default_factory=list)


class FileEntry(_Model, kw_only=True, frozen=True, gc=False):
    name: str
    path: str | None = None
    type: FileType | None = None
    size: int | None = None
    mode: int | None = None
    permissions: str | None = None
    owner: str | None = None
    group: str | None = None
    modified_at: int | None = None
    symlink_target: str | None = None


class ListDirResponse(_Model, kw_only=True, frozen=True, gc=False):
    entries: list[FileEntry] = msgspec.field(default_factory=list)


class MakeDirResponse(_Model, kw_only=True, frozen=True, gc=False):
    entry: FileEntry


class Error1(_Model, kw_only=True, frozen=True, gc=False):
    """The inner object of an error body (the official SDK's generated name)."""

    code: str | None = None
    message: str | None = None


class Error(_Model, kw_only=True, frozen=True, gc=False):
    """An error body, ``{"error": {"code", "message"}}`` (the official SDK's generated name)."""

    error: Error1 | None = None


# --- request bodies (unset fields are not sent) -------------------------------------


class _Request(msgspec.Struct, kw_only=True, omit_defaults=True):
    pass


class CreateCapsuleRequest(_Request, kw_only=True):
    template: str | None = None
    vcpus: int | None = None
    memory_mb: int | None = None
    timeout_sec: int | None = None
    metadata: dict[str, str] | None = None


class CreateSnapshotRequest(_Request, kw_only=True):
    sandbox_id: str
    name: str | None = None


class ExecRequest(_Request, kw_only=True):
    cmd: str
    args: list[str] | None = None
    timeout_sec: int | None = None
    background: bool = False
    tag: str | None = None
    envs: dict[str, str] | None = None
    cwd: str | None = None


class ReadFileRequest(_Request, kw_only=True):
    path: str


class ListDirRequest(_Request, kw_only=True):
    path: str
    depth: int | None = None


class MakeDirRequest(_Request, kw_only=True):
    path: str


class RemoveRequest(_Request, kw_only=True):
    path: str


# Decoders are built once and reused: building one compiles a type-specific parser.
capsule_decoder = msgspec.json.Decoder(Capsule)
capsule_list_decoder = msgspec.json.Decoder(list[Capsule])
template_decoder = msgspec.json.Decoder(Template)
template_list_decoder = msgspec.json.Decoder(list[Template])
stats_decoder = msgspec.json.Decoder(CapsuleStats)
usage_decoder = msgspec.json.Decoder(UsageResponse)
metrics_decoder = msgspec.json.Decoder(CapsuleMetrics)
sse_event_decoder = msgspec.json.Decoder(SSEEvent)
exec_decoder = msgspec.json.Decoder(ExecResponse)
background_exec_decoder = msgspec.json.Decoder(BackgroundExecResponse)
process_list_decoder = msgspec.json.Decoder(ProcessListResponse)
list_dir_decoder = msgspec.json.Decoder(ListDirResponse)
make_dir_decoder = msgspec.json.Decoder(MakeDirResponse)
json_encoder = msgspec.json.Encoder()
