"""OpenTelemetry spans for every API call, carrying metadata only.

Tracing is on only when ``opentelemetry-api`` is installed *and* a real tracer provider
has been set (``opentelemetry.trace.set_tracer_provider``). Otherwise nothing of
OpenTelemetry is imported beyond one failed or cheap import attempt, and a call pays for
one function call that returns a shared no-op object.

One span per API call (``_async/_requester.py`` opens it around the whole call, retries
included): ``{method} {route template}`` of kind CLIENT. Commands, file transfers, event
streams and terminals are API calls too; a streamed call (a WebSocket, a download) keeps
its span open until its response is closed, so the span covers the whole stream.

Attributes, and nothing else: ``http.request.method``, ``url.template`` (the route with
every parameter replaced by a placeholder, never the raw path), ``http.response.status_code``,
``http.request.resend_count`` (retries), ``error.type`` (the exception's class name),
``wrenn.capsule.id`` and ``wrenn.stream``. Never a command line, file content or path,
environment value, metadata, header, query parameter or key: those are not even passed in.
An error sets the span's status to ERROR *without* a description and records no exception
event, because error messages can quote paths or output.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any

import httpx
import msgspec

from ._config import RETRY_COUNT_HEADER
from ._responses import RawResponse
from ._version import __version__

# Path segments that are part of a route, never a value: a segment outside this set is
# replaced by a placeholder, so no id, name or unknown text reaches a span.
_STATIC = frozenset(
    {
        "v1",
        "capsules",
        "stats",
        "usage",
        "exec",
        "stream",
        "processes",
        "ping",
        "metrics",
        "pause",
        "resume",
        "snapshots",
        "files",
        "read",
        "write",
        "list",
        "mkdir",
        "remove",
        "pty",
        "events",
        "templates",
        "hosts",
        "teams",
        "users",
        "me",
        "health",
    }
)
# The placeholder for a value, named by the segment before it.
_PARAMS = {"capsules": "{id}", "processes": "{selector}", "snapshots": "{name}"}


class _Created(msgspec.Struct):
    """The one field of a create's answer that a span records."""

    id: str


_created_decoder = msgspec.json.Decoder(_Created)

_UNSET: Any = object()
# OpenTelemetry's variable naming a provider class to load when none is set in code.
_ENV_PROVIDER = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
_trace: Any = _UNSET  # the opentelemetry.trace module; None when it is not installed
_context: Any = None  # the opentelemetry.context module
_tracer: Any = None  # ours, once a real provider is known (the global one is set once)
_override: Any = None  # a provider given to use_tracer_provider()


def route_template(path: str) -> str:
    """``/v1/capsules/cl-1/processes/42`` -> ``/v1/capsules/{id}/processes/{selector}``.

    Only known route words survive; any other segment becomes a placeholder. A query
    string or fragment is dropped.
    """
    path = path.split("?", 1)[0].split("#", 1)[0]
    out: list[str] = []
    previous = ""
    for segment in path.split("/"):
        if not segment or segment in _STATIC:
            out.append(segment)
        else:
            out.append(_PARAMS.get(previous, "{param}"))
        previous = segment
    return "/".join(out)


def _capsule_id(path: str) -> str | None:
    parts = path.split("?", 1)[0].split("/")
    # ["", "v1", "capsules", "<id>", ...]
    if len(parts) > 3 and parts[1] == "v1" and parts[2] == "capsules":
        value = parts[3]
        if value and value not in _STATIC and _plain(value):
            return value
    return None


def _plain(value: str) -> bool:
    """An id as the platform issues it (letters, digits, ``-`` and ``_``)."""
    return len(value) <= 128 and all(c.isascii() and (c.isalnum() or c in "-_") for c in value)


def _load() -> Any:
    """The tracer to use now, or None (not installed, or no provider set)."""
    global _trace, _context, _tracer
    if _trace is _UNSET:
        try:
            _context = importlib.import_module("opentelemetry.context")
            _trace = importlib.import_module("opentelemetry.trace")
        except ImportError:
            _trace = None
    if _trace is None:
        return None
    # No global provider yet (the API's own variable, read without the lookup that
    # get_tracer_provider makes of the environment on every call): nothing to trace,
    # unless the environment names a provider for the API to load.
    if (
        _override is None
        and not _ENV_PROVIDER
        and getattr(_trace, "_TRACER_PROVIDER", _UNSET) is None
    ):
        return None
    provider = _override if _override is not None else _trace.get_tracer_provider()
    if isinstance(provider, (_trace.ProxyTracerProvider, _trace.NoOpTracerProvider)):
        return None
    tracer = provider.get_tracer("wrenn", __version__)
    if _override is None:
        _tracer = tracer  # the global provider cannot change once set
    return tracer


def use_tracer_provider(provider: Any) -> None:
    """Trace with ``provider`` instead of the global one (None: back to the global one).

    For tests and programs that keep their provider out of the global slot.
    """
    global _override, _tracer
    _load()
    _override = provider
    _tracer = None if provider is None else provider.get_tracer("wrenn", __version__)


class _NoSpan:
    """What ``call_span`` returns when tracing is off: every method does nothing."""

    __slots__ = ()

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def done(self, response: RawResponse | httpx.Response) -> None:
        return None


_NO_SPAN = _NoSpan()


class _CallSpan:
    """The span of one API call: current while the call runs, ended when it returns,
    fails or, for a stream, when its response is closed."""

    __slots__ = ("_creates", "_kept", "_span", "_token")

    def __init__(self, span: Any, creates: bool) -> None:
        self._span = span
        self._token: Any = None
        self._kept = False
        self._creates = creates  # POST /v1/capsules: the capsule id is in the answer

    def __enter__(self) -> _CallSpan:
        try:
            self._token = _context.attach(_trace.set_span_in_context(self._span))
        except Exception:  # tracing must never break a call
            self._token = None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._token is not None:
                _context.detach(self._token)
            if exc is not None:
                span = self._span
                span.set_attribute("error.type", type(exc).__name__)
                status = getattr(exc, "status_code", None)
                if isinstance(status, int):
                    span.set_attribute("http.response.status_code", status)
                retries = getattr(exc, "retries_taken", None)
                if isinstance(retries, int) and retries:
                    span.set_attribute("http.request.resend_count", retries)
                span.set_status(_trace.StatusCode.ERROR)
            if exc is not None or not self._kept:
                self._span.end()
        except Exception:
            pass

    def done(self, response: RawResponse | httpx.Response) -> None:
        """Record a successful call's outcome; a stream's span then lasts until it closes."""
        try:
            span = self._span
            span.set_attribute("http.response.status_code", response.status_code)
            if isinstance(response, RawResponse):
                retries = response.retries_taken
            else:
                header = response.request.headers.get(RETRY_COUNT_HEADER, "0")
                retries = int(header) if header.isdigit() else 0
                span.set_attribute("wrenn.stream", True)
                response.stream = _SpanEndingStream(response.stream, span)
                self._kept = True
            if retries:
                span.set_attribute("http.request.resend_count", retries)
            if self._creates and isinstance(response, RawResponse):
                capsule_id = _created_decoder.decode(response.content).id
                if _plain(capsule_id):
                    span.set_attribute("wrenn.capsule.id", capsule_id)
        except Exception:
            pass


class _SpanEndingStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body stream that ends the call's span when it is closed."""

    def __init__(self, inner: Any, span: Any) -> None:
        self._inner = inner
        self._span: Any = span

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._inner)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._inner.__aiter__()  # type: ignore[no-any-return]

    def _end(self) -> None:
        span, self._span = self._span, None
        if span is not None:
            try:
                span.end()
            except Exception:
                pass

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._end()

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._end()


def call_span(method: str, path: str) -> _CallSpan | _NoSpan:
    """A context manager around one API call: a real span if tracing is on, else a no-op."""
    tracer = _tracer
    if tracer is None:
        if _trace is None:
            return _NO_SPAN
        tracer = _load()
        if tracer is None:
            return _NO_SPAN
    try:
        template = route_template(path)
        attributes: dict[str, Any] = {"http.request.method": method, "url.template": template}
        capsule_id = _capsule_id(path)
        if capsule_id is not None:
            attributes["wrenn.capsule.id"] = capsule_id
        span = tracer.start_span(
            f"{method} {template}", kind=_trace.SpanKind.CLIENT, attributes=attributes
        )
    except Exception:
        return _NO_SPAN
    return _CallSpan(span, method == "POST" and template == "/v1/capsules")
