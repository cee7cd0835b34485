"""What a careful user of raw httpx would decode into: a typed msgspec Struct.

Used by the raw httpx + msgspec baseline and by the raw-socket floor, so both do the
same typed decode (timestamps become ``datetime``) as the SDKs do, and the list
benchmarks compare like with like.
"""

from __future__ import annotations

import datetime as dt

import msgspec


class RawCapsule(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    id: str
    status: str | None = None
    template: str | None = None
    vcpus: int | None = None
    memory_mb: int | None = None
    timeout_sec: int | None = None
    host_ip: str | None = None
    created_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    last_active_at: dt.datetime | None = None
    last_updated: dt.datetime | None = None
    metadata: dict[str, str] | None = None


one_decoder = msgspec.json.Decoder(RawCapsule)
list_decoder = msgspec.json.Decoder(list[RawCapsule])
