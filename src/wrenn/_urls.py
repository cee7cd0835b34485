"""Building request paths and capsule proxy URLs safely.

Every path parameter is percent-encoded as exactly one segment, and values that
would change which resource a request reaches (``.``, ``..``, empty, control
characters) are refused before any I/O.
"""

from __future__ import annotations

import re
import urllib.parse

import httpx

from ._constants import DEFAULT_PROXY_BASE_HOST, DEFAULT_PROXY_DOMAIN

# Everything except unreserved characters and a few sub-delims is encoded: "/", "?",
# "#" and "%" always are, so a value can never add a segment, a query or a fragment.
_SAFE = "!$&'()*+,;=:@"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Unreserved characters other than "." and "~": a value made only of these needs no
# encoding and can be neither empty nor a dot segment.
_PLAIN = re.compile(r"[A-Za-z0-9_-]+")
# A capsule id as the platform issues it, which is also a valid DNS label prefix.
_PROXY_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,56}[a-z0-9])?$")


def path_param(value: object, name: str) -> str:
    """Validate and percent-encode one path parameter."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if _PLAIN.fullmatch(value):
        # An id as the platform issues it: non-empty, no dot, no control character, and
        # nothing quote() would change, so every check below passes and it is its own
        # encoding. Skipping them is most of the cost of a small call's path.
        return value
    if not value or not value.strip():
        raise ValueError(f"Expected a non-empty value for `{name}`")
    if _CONTROL.search(value):
        raise ValueError(f"`{name}` contains control characters")
    encoded = urllib.parse.quote(value, safe=_SAFE)
    if urllib.parse.unquote(encoded) in (".", "..") or value in (".", ".."):
        raise ValueError(f"`{name}` may not be a dot segment ({value!r})")
    return encoded


def build_path(template: str, **params: object) -> str:
    """Fill ``template`` (``"/v1/capsules/{id}"``) with encoded parameters."""
    return template.format(**{k: path_param(v, k) for k, v in params.items()})


def resolve_proxy_domain(base_url: httpx.URL, proxy_domain: str | None) -> str:
    """The host suffix of capsule port URLs, with the official SDK's precedence."""
    if proxy_domain:
        return proxy_domain
    if base_url.host == DEFAULT_PROXY_BASE_HOST:
        return DEFAULT_PROXY_DOMAIN
    return base_url.netloc.decode("ascii")


def proxy_url(base_url: httpx.URL, proxy_domain: str, capsule_id: str, port: int) -> str:
    """``{scheme}://{port}-{capsule_id}.{domain}`` for a port inside a capsule."""
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ValueError(f"port must be an integer from 1 to 65535, not {port!r}")
    if not isinstance(capsule_id, str) or not _PROXY_ID.match(capsule_id):
        raise ValueError(
            "capsule id is not a valid host label (expected lowercase letters, digits and '-')"
        )
    scheme = "http" if base_url.scheme in ("http", "ws") else "https"
    return f"{scheme}://{port}-{capsule_id}.{proxy_domain}"
