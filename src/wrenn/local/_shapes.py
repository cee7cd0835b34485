"""JSON shapes of capsules and templates, and Go-like decoding of request fields."""

from __future__ import annotations

from typing import Any

from . import _wire
from ._store import CapsuleRow, TemplateRow
from ._wire import bad_request

DISK_SIZE_MB = 5120


def capsule_json(c: CapsuleRow, disk_used_mb: int | None = None) -> dict[str, Any]:
    return _wire.omit_none(
        {
            "id": c.id,
            "status": c.status,
            "template": c.template,
            "vcpus": c.vcpus,
            "memory_mb": c.memory_mb,
            "timeout_sec": c.timeout_sec,
            "created_at": _wire.rfc3339(c.created_at),
            "started_at": _wire.rfc3339(c.started_at),
            "last_active_at": _wire.rfc3339(c.last_active_at),
            "last_updated": _wire.rfc3339(c.last_updated),
            "metadata": c.metadata or None,
            "disk_size_mb": DISK_SIZE_MB,
            "disk_used_mb": disk_used_mb,
        }
    )


def template_json(t: TemplateRow) -> dict[str, Any]:
    return _wire.omit_none(
        {
            "name": t.name,
            "type": t.type,
            "vcpus": t.vcpus or None,
            "memory_mb": t.memory_mb or None,
            "size_bytes": t.size_bytes,
            "created_at": _wire.rfc3339(t.created_at),
            "platform": t.platform,
            "protected": t.platform,
        }
    )


def field(
    body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = None
) -> Any:
    """Go-like decoding: a present field of the wrong JSON type is a 400."""
    value = body.get(name)
    if value is None:
        return default
    if kind is int:
        if type(value) is not int:
            raise bad_request("invalid JSON body")
    elif not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise bad_request("invalid JSON body")
    return value


def str_map(body: dict[str, Any], name: str) -> dict[str, str]:
    value = field(body, name, dict, {})
    if not all(isinstance(v, str) for v in value.values()):
        raise bad_request("invalid JSON body")
    return dict(value)


def str_list(body: dict[str, Any], name: str) -> list[str]:
    value = field(body, name, list, [])
    if not all(isinstance(v, str) for v in value):
        raise bad_request("invalid JSON body")
    return list(value)
