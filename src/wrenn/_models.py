"""msgspec Structs for every wire shape of the Wrenn API, and their reused decoders.

Every name is importable from here, as it always was (``wrenn.models`` re-exports the
public ones); each is defined with its topic. The bases, the forward-compatible enum and
the error body are in ``_models_base``; the control plane's shapes (capsules, templates,
usage, events) in ``_models_control``; a capsule agent's (commands, files) in
``_models_data``. The SDK's own modules import from those homes; the decoders and the
encoder (not in ``__all__``) are re-exported for code that imported them from here.
"""

from __future__ import annotations

from ._exceptions import ModelValidationError
from ._models_base import Error, Error1
from ._models_base import json_encoder as json_encoder
from ._models_control import (
    Actor,
    ActorType,
    Capsule,
    CapsuleMetrics,
    CapsuleStats,
    CreateCapsuleRequest,
    CreateSnapshotRequest,
    Current,
    Event,
    MetricPoint,
    MetricsRange,
    Outcome,
    Peaks,
    Point,
    Range,
    Range1,
    Resource,
    Series,
    SSEEvent,
    StatsRange,
    Status,
    Template,
    TemplateType,
    Type,
    Type2,
    UsageResponse,
)
from ._models_control import capsule_decoder as capsule_decoder
from ._models_control import capsule_list_decoder as capsule_list_decoder
from ._models_control import metrics_decoder as metrics_decoder
from ._models_control import sse_event_decoder as sse_event_decoder
from ._models_control import stats_decoder as stats_decoder
from ._models_control import template_decoder as template_decoder
from ._models_control import template_list_decoder as template_list_decoder
from ._models_control import usage_decoder as usage_decoder
from ._models_data import (
    BackgroundExecResponse,
    Encoding,
    ExecRequest,
    ExecResponse,
    FileEntry,
    FileType,
    ListDirRequest,
    ListDirResponse,
    MakeDirRequest,
    MakeDirResponse,
    ProcessEntry,
    ProcessListResponse,
    ReadFileRequest,
    RemoveRequest,
    Type1,
)
from ._models_data import background_exec_decoder as background_exec_decoder
from ._models_data import exec_decoder as exec_decoder
from ._models_data import list_dir_decoder as list_dir_decoder
from ._models_data import make_dir_decoder as make_dir_decoder
from ._models_data import process_list_decoder as process_list_decoder

# Spelled out, not summed from the three modules' lists: mypy follows `wrenn.models`'
# star import only through a literal list (a summed one hid every model from it).
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
