"""Client options: resolution from arguments and environment, validation, and the masked key.

Pure code shared by both clients: nothing here performs I/O.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import math
import os
import socket
import ssl
import threading
import urllib.parse
import warnings
from collections.abc import Mapping
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, NoReturn

import httpx

from ._constants import (
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_KEEPALIVE_EXPIRY,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_KEEPALIVE,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_POOL_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_WRITE_TIMEOUT,
    ENV_API_KEY,
    ENV_BASE_URL,
    ENV_PROXY_DOMAIN,
)
from ._constants import DEFAULT_PROXY_DOMAIN as DEFAULT_PROXY_DOMAIN  # as the official _config
from ._exceptions import InsecureTransportWarning as InsecureTransportWarning
from ._urls import resolve_proxy_domain
from ._version import __version__

# The defaults of _constants as the httpx objects a client is built with.
DEFAULT_TIMEOUT = httpx.Timeout(
    DEFAULT_READ_TIMEOUT,
    connect=DEFAULT_CONNECT_TIMEOUT,
    write=DEFAULT_WRITE_TIMEOUT,
    pool=DEFAULT_POOL_TIMEOUT,
)
DEFAULT_LIMITS = httpx.Limits(
    max_connections=DEFAULT_MAX_CONNECTIONS,
    max_keepalive_connections=DEFAULT_MAX_KEEPALIVE,
    keepalive_expiry=DEFAULT_KEEPALIVE_EXPIRY,
)

USER_AGENT = f"wrenn-python/{__version__}"
RETRY_COUNT_HEADER = "X-Wrenn-Retry-Count"


class _NotGiven:
    """Marks an option left out of ``with_options()`` (``None`` can be a real value)."""

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> bool:
        return False


NOT_GIVEN: Any = _NotGiven()


class Secret:
    """An API key that never shows itself in ``repr``, ``str``, logs or pickles."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"api_key must be a str, not {type(value).__name__}")
        if not value:
            raise ValueError("No API key provided: api_key is empty")
        # Checked without echoing the value: a key read from a file often ends in "\n",
        # and httpx would put the whole key into its "illegal header value" message.
        if any(not (0x21 <= ord(ch) <= 0x7E) for ch in value):
            raise ValueError(
                "api_key contains whitespace, control or non-ASCII characters "
                "(was it read from a file without .strip()?)"
            )
        self._value = value

    def reveal(self) -> str:
        """The raw key, for the one place that puts it on the wire."""
        return self._value

    @property
    def masked(self) -> str:
        value = self._value
        prefix = value[:4] if value.startswith("wrn_") else ""
        return f"{prefix}…{value[-4:]}" if len(value) >= 12 else "…"

    def scrub(self, text: str) -> str:
        """Replace every occurrence of the key in ``text`` with its masked form."""
        return text.replace(self._value, self.masked) if self._value in text else text

    def __repr__(self) -> str:
        return f"Secret({self.masked!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("an API key is not picklable; pass it to the new process explicitly")


def _as_timeout(value: float | httpx.Timeout | None, name: str = "timeout") -> httpx.Timeout:
    if value is None:
        return DEFAULT_TIMEOUT
    if isinstance(value, httpx.Timeout):
        for phase in ("connect", "read", "write", "pool"):
            if getattr(value, phase) is None:
                raise ValueError(
                    f"{name}.{phase} is None, which would wait forever; give every phase a finite value"
                )
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or an httpx.Timeout")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive, finite number of seconds")
    return httpx.Timeout(float(value))


def _attempt_timeout(value: float | httpx.Timeout | None) -> float | None:
    """The wall-clock bound of one attempt: only a plain number of seconds sets one."""
    if value is None or isinstance(value, httpx.Timeout):
        return None
    return float(value)  # already validated by _as_timeout


def _check_positive(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive, finite number of seconds")
    return float(value)


def _check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    result: dict[str, str] = {}
    for key, value in (headers or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("default_headers must map str to str")
        if any(ch in key + value for ch in "\r\n\x00"):
            raise ValueError(f"header {key!r} contains CR, LF or NUL")
        result[key] = value
    return result


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _resolve_base_url(base_url: str | httpx.URL | None, allow_insecure_http: bool) -> httpx.URL:
    raw = base_url if base_url is not None else (os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL)
    try:
        url = httpx.URL(str(raw).strip())
    except httpx.InvalidURL as exc:
        raise ValueError(f"base_url is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("base_url must be an absolute http:// or https:// URL")
    if url.query or url.fragment:
        raise ValueError("base_url may not carry a query string or a fragment")
    if url.scheme == "http" and not allow_insecure_http and not _is_loopback(url.host):
        warnings.warn(
            f"base_url uses plain http to {url.host}: the API key travels unencrypted. "
            "Use https, or pass allow_insecure_http=True to silence this warning.",
            InsecureTransportWarning,
            stacklevel=4,
        )
    return url.copy_with(path=url.path.rstrip("/"))


@dataclasses.dataclass(frozen=True)
class ClientOptions:
    """Everything a call needs to know about the client it was made through."""

    api_key: Secret
    base_url: httpx.URL
    proxy_domain: str
    timeout: httpx.Timeout
    total_timeout: float | None
    max_retries: int
    default_headers: Mapping[str, str]
    max_response_bytes: int
    # The float given as ``timeout``, which bounds each attempt's wall clock; None when
    # an httpx.Timeout (or the default) was given, whose phases keep httpx's meaning.
    attempt_timeout: float | None = None

    def replace(self, **changes: Any) -> ClientOptions:
        return dataclasses.replace(self, **changes)

    @functools.cached_property
    def _url_prefix(self) -> str:
        # Built once: re-parsing the base URL on every call cost more than the rest of
        # the request path (measured in bench/).
        return str(self.base_url).rstrip("/")

    def url(self, path: str) -> str:
        """Join the base URL (which may carry a path such as ``/api``) and an API path.

        A path with a dot segment (``.``/``..``, also hidden in an encoded parameter
        such as ``..%2Fapi-keys``) is refused before any I/O: a server or proxy that
        decodes it would route the call to another resource.
        """
        if "." in path or "%2" in path:
            segments = urllib.parse.unquote(path.split("?", 1)[0]).split("/")
            if any(segment in (".", "..") for segment in segments):
                raise ValueError("a path parameter may not contain a dot segment ('.' or '..')")
        return self._url_prefix + path

    def __repr__(self) -> str:
        return (
            f"ClientOptions(base_url={str(self.base_url)!r}, api_key={self.api_key!r}, "
            f"timeout={self.timeout!r}, total_timeout={self.total_timeout!r}, "
            f"max_retries={self.max_retries!r})"
        )


def resolve_options(
    *,
    api_key: str | None,
    base_url: str | httpx.URL | None,
    proxy_domain: str | None,
    timeout: float | httpx.Timeout | None,
    total_timeout: float | None,
    max_retries: int,
    default_headers: Mapping[str, str] | None,
    max_response_bytes: int | None,
    allow_insecure_http: bool,
) -> ClientOptions:
    """Build validated options from constructor arguments and the environment."""
    key = api_key if api_key is not None else os.environ.get(ENV_API_KEY)
    if not key:
        raise ValueError(
            "No API key provided. Pass api_key=... or set the WRENN_API_KEY environment variable."
        )
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError("max_retries must be a non-negative integer")
    if max_response_bytes is None:
        max_response_bytes = DEFAULT_MAX_RESPONSE_BYTES
    if (
        isinstance(max_response_bytes, bool)
        or not isinstance(max_response_bytes, int)
        or max_response_bytes <= 0
    ):
        raise ValueError("max_response_bytes must be a positive integer")
    url = _resolve_base_url(base_url, allow_insecure_http)
    domain = proxy_domain or os.environ.get(ENV_PROXY_DOMAIN) or None
    return ClientOptions(
        api_key=Secret(key),
        base_url=url,
        proxy_domain=resolve_proxy_domain(url, domain),
        timeout=_as_timeout(timeout),
        total_timeout=_check_positive(total_timeout, "total_timeout"),
        max_retries=max_retries,
        default_headers=_check_headers(default_headers),
        max_response_bytes=max_response_bytes,
        attempt_timeout=_attempt_timeout(timeout),
    )


def updated_options(options: ClientOptions, **changes: Any) -> ClientOptions:
    """Apply ``with_options(...)`` overrides, validating each the same way as the constructor."""
    resolved: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "timeout":
            resolved[name] = _as_timeout(value)
            resolved["attempt_timeout"] = _attempt_timeout(value)
        elif name == "total_timeout":
            resolved[name] = _check_positive(value, name)
        elif name == "max_retries":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError("max_retries must be a non-negative integer")
            resolved[name] = value
        elif name == "default_headers":
            resolved[name] = {**options.default_headers, **_check_headers(value)}
        elif name == "max_response_bytes":
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError("max_response_bytes must be a positive integer")
            resolved[name] = value
        else:
            raise TypeError(f"with_options() got an unexpected option {name!r}")
    return options.replace(**resolved)


_SSL_CONTEXTS: dict[tuple[bool, str | None, str | None], ssl.SSLContext] = {}
_SSL_LOCK = threading.Lock()


def refuse_all_cookies() -> CookieJar:
    """A cookie jar that stores nothing: no domain may set a cookie in it."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def default_ssl_context(trust_env: bool) -> ssl.SSLContext:
    """The verifying TLS context of ``verify=True``, built once per process and shared.

    Loading the CA bundle takes tens of milliseconds; sharing one context makes a new
    client cheap (an ``SSLContext`` is safe to share between connections and threads).
    It is rebuilt if ``SSL_CERT_FILE``/``SSL_CERT_DIR`` change while ``trust_env`` is on.
    """
    key = (
        trust_env,
        os.environ.get("SSL_CERT_FILE") if trust_env else None,
        os.environ.get("SSL_CERT_DIR") if trust_env else None,
    )
    with _SSL_LOCK:
        context = _SSL_CONTEXTS.get(key)
        if context is None:
            context = _SSL_CONTEXTS[key] = httpx.create_ssl_context(
                verify=True, trust_env=trust_env
            )
        return context


def default_limits() -> httpx.Limits:
    return DEFAULT_LIMITS


def keepalive_socket_options() -> list[tuple[int, int, int]]:
    """TCP keepalive so a dead peer on a long call is noticed (where the OS supports it)."""
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 60), ("TCP_KEEPCNT", 5)):
        if hasattr(socket, name):
            options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    return options
