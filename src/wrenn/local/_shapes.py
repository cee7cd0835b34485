"""JSON shapes of capsules and templates (request decoding is in ``_validate``)."""

from __future__ import annotations

import logging
import re
from typing import Any

from . import _wire
from ._store import CapsuleRow, TemplateRow

log = logging.getLogger("wrenn.local")
_SURROGATE = re.compile("[\ud800-\udfff]")

DISK_SIZE_MB = 5120


def _clean(text: str) -> str:
    # Lone surrogates (the only str content UTF-8 cannot encode) become U+FFFD.
    return _SURROGATE.sub("\ufffd", text)


def _safe_metadata(c: CapsuleRow) -> dict[str, str]:
    """The capsule's metadata, repaired if a stored string cannot be encoded.

    Create refuses such strings now, but a row written by an older server (or
    edited by hand) must not make every list 500 for everyone: the bad
    characters become U+FFFD in the answer, and the row is logged.
    """
    meta = c.metadata
    try:
        for k, v in meta.items():
            k.encode("utf-8")
            v.encode("utf-8")
    except (UnicodeEncodeError, AttributeError):
        log.warning("capsule %s has metadata that is not valid text; answering it repaired", c.id)
        return {_clean(str(k)): _clean(str(v)) for k, v in meta.items()}
    return meta


def capsule_json(
    c: CapsuleRow, disk_used_mb: int | None = None, disk_size_mb: int = DISK_SIZE_MB
) -> dict[str, Any]:
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
            "metadata": _safe_metadata(c) or None,
            "disk_size_mb": disk_size_mb,
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
