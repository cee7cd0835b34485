"""Validation of every REST and WebSocket input, before it reaches SQLite or a process.

One place, so that the REST routes and the WebSocket start frames agree on what
is acceptable. Every check raises ``ApiError`` 400 ``invalid_request``; the
WebSocket handlers turn that into an in-band ``error`` frame.

Why each rule exists:
- strings must be encodable as UTF-8: JSON's ``"\\ud800"`` decodes to a lone
  surrogate, which cannot be written back out (the answer, the capsule list,
  argv and environ all need UTF-8);
- NUL cannot be in an argv element, an environment entry or a path (the kernel
  sees C strings), so it is refused instead of being cut short or crashing;
- integers are Go ``int64`` on the platform, and each field has a sane range
  (a value of 2**63 would overflow SQLite, a PTY size must fit 16 bits);
- environment names must be something ``environ`` can hold.
"""

from __future__ import annotations

import json
from typing import Any

from ._wire import bad_request

MAX_JSON_BODY = 1024 * 1024  # JSON routes: larger bodies answer 413 too_large
INT64_MAX = 2**63 - 1
MAX_SELECTOR_DIGITS = 10  # pids fit in 32 bits


def text_ok(value: str, name: str) -> str:
    """``value`` if it is valid UTF-8 text without NUL, else a 400."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request(f"{name}: invalid UTF-8 (lone surrogate)") from None
    if "\x00" in value:
        raise bad_request(f"{name} must not contain NUL")
    return value


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
        if not -INT64_MAX - 1 <= value <= INT64_MAX:  # Go would fail to decode it too
            raise bad_request(f"{name} is out of range")
    elif not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise bad_request("invalid JSON body")
    if isinstance(value, str):
        text_ok(value, name)
    return value


def integer(body: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    """An int field within ``lo..hi`` (absent or null gives ``default``)."""
    value: int = field(body, name, int, default)
    if not lo <= value <= hi:
        raise bad_request(f"{name} must be between {lo} and {hi}")
    return value


def str_map(body: dict[str, Any], name: str) -> dict[str, str]:
    value = field(body, name, dict, {})
    for k, v in value.items():
        if not isinstance(v, str):
            raise bad_request("invalid JSON body")
        text_ok(k, f"{name} key")
        text_ok(v, f"{name}[{k!r}]")
    return dict(value)


def env_map(body: dict[str, Any], name: str = "envs") -> dict[str, str]:
    """Environment variables: names that ``environ`` can hold, values without NUL."""
    envs = str_map(body, name)
    for k in envs:
        if not k or "=" in k:
            raise bad_request(f"invalid environment variable name: {k!r}")
    return envs


def str_list(body: dict[str, Any], name: str) -> list[str]:
    value = field(body, name, list, [])
    for i, v in enumerate(value):
        if not isinstance(v, str):
            raise bad_request("invalid JSON body")
        text_ok(v, f"{name}[{i}]")
    return list(value)


def loads(raw: bytes | str) -> Any:
    """Parse JSON; malformed, undecodable or absurdly nested input is a 400."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        # RecursionError: JSON nested some thousands deep exhausts the parser's stack.
        raise bad_request("invalid JSON body") from None


def selector(value: str) -> int | str:
    """A process selector: a pid (ASCII digits) or a tag."""
    # str.isdigit() accepts "²" and int() rejects over 4300 digits: ASCII digits only.
    if value.isascii() and value.isdigit():
        if len(value) > MAX_SELECTOR_DIGITS:
            raise bad_request("invalid process selector")
        return int(value)
    return text_ok(value, "selector")
