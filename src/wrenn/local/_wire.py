"""Wire format helpers: Go-compatible JSON, the error envelope, ids and timestamps.

The real control plane is written in Go and encodes with ``json.Encoder``; clients
(and tests that compare bytes) see compact JSON, HTML-escaped ``<``/``>``/``&``,
raw non-ASCII and a trailing newline.  Everything the server writes goes through
:func:`go_json` so the bytes match.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from typing import Any

from starlette.responses import Response

CAPSULE_ID_RE = re.compile(r"^cl-[0-9a-z]{25}$")
SAFE_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$")
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _normalise(value: Any) -> Any:
    # Go prints an integral float64 without a fractional part ("12", not "12.0").
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return int(value)
        return value
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    return value


def go_json(obj: Any) -> bytes:
    """Encode ``obj`` the way Go's ``json.Encoder`` with default settings does."""
    text = json.dumps(_normalise(obj), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    # These characters can only occur inside JSON strings, so plain replacement is safe.
    text = (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )
    return text.encode("utf-8") + b"\n"


class GoJSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return go_json(content)


class ApiError(Exception):
    """An error answered with the standard ``{"error":{"code","message"}}`` envelope."""

    def __init__(self, status: int, code: str, message: str) -> None:
        # A message may quote client input; never let a lone surrogate make the
        # error itself unencodable (that would turn a 400 into a 500).
        message = re.sub("[\ud800-\udfff]", "\ufffd", message)
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> GoJSONResponse:
        return GoJSONResponse(
            {"error": {"code": self.code, "message": self.message}}, status_code=self.status
        )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


def not_found(message: str = "resource not found") -> ApiError:
    return ApiError(404, "not_found", message)


def invalid_state(message: str) -> ApiError:
    return ApiError(409, "invalid_state", message)


def agent_error(message: str) -> ApiError:
    # The real host agent wraps envd failures as Connect "internal", mapped to 502.
    return ApiError(502, "agent_error", message)


def unsupported(message: str) -> ApiError:
    # What this server's isolation backend cannot do (a terminal in a microVM, ...).
    return ApiError(501, "not_implemented", message)


def new_capsule_id() -> str:
    n = uuid.uuid4().int
    digits = []
    while n:
        n, r = divmod(n, 36)
        digits.append(_B36[r])
    return "cl-" + "".join(reversed(digits)).rjust(25, "0")


def hex8() -> str:
    return secrets.token_hex(4)


def new_api_key() -> str:
    return "wrn_" + secrets.token_hex(16)


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def omit_none(d: dict[str, Any]) -> dict[str, Any]:
    """Drop ``None`` values: the Go structs use ``omitempty`` / nil pointers."""
    return {k: v for k, v in d.items() if v is not None}
