"""Terminal (PTY) events and frame parsing, shared by both clients."""

from __future__ import annotations

import base64
import binascii
import dataclasses

import msgspec

from ._models_base import _OpenEnum

__all__ = ["PtyEvent", "PtyEventType", "parse_pty_message"]


class PtyEventType(_OpenEnum):
    """Kind of a terminal event; unknown kinds are kept as their raw string."""

    started = "started"
    output = "output"
    exit = "exit"
    error = "error"
    ping = "ping"


@dataclasses.dataclass
class PtyEvent:
    """One terminal event. ``data`` is bytes for output, text for errors."""

    type: PtyEventType
    pid: int | None = None
    tag: str | None = None
    data: bytes | str | None = None
    exit_code: int | None = None
    fatal: bool | None = None


def parse_pty_message(message: str | bytes) -> PtyEvent:
    """Parse one server message: a binary frame is output; a text frame is a JSON event.

    Both terminal protocols are understood: output as binary frames (current) and as
    ``{"type": "output", "data": "<base64>"}`` text frames (older servers).
    """
    if isinstance(message, bytes):
        return PtyEvent(PtyEventType.output, data=message)
    try:
        frame = msgspec.json.decode(message)
    except msgspec.DecodeError as exc:
        raise ValueError(f"a terminal frame is not valid JSON: {exc}") from exc
    if not isinstance(frame, dict):
        raise ValueError("a terminal frame is not a JSON object")
    kind = PtyEventType(str(frame.get("type")))
    raw = frame.get("data")
    data: bytes | str | None = raw if isinstance(raw, (str, bytes)) else None
    if kind is PtyEventType.output and isinstance(raw, str):
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            data = raw.encode()
    pid, code, fatal = frame.get("pid"), frame.get("exit_code"), frame.get("fatal")
    return PtyEvent(
        type=kind,
        pid=pid if isinstance(pid, int) else None,
        tag=frame.get("tag") if isinstance(frame.get("tag"), str) else None,
        data=data,
        exit_code=code if isinstance(code, int) else None,
        fatal=fatal if isinstance(fatal, bool) else None,
    )
