"""Deterministic fault injection: rules that tests put on a running ``LocalServer``.

Every rule fires on a count, never by chance or by the clock: the next ``times``
matching calls (``None``: every one, until the rule is removed). A rule that has
fired ``times`` times removes itself. Rules live in the server's :class:`Faults`
(``server.faults``), which tests call from any thread (the server runs on its own
thread and loop); one lock guards the rules and their counts, and nothing waits
while holding it.

Rules are matched only for requests that passed the API key check (an
unauthenticated request never fires one) under ``/v1/``: ``/health`` and the capsule
port proxy are never affected. See ``README.md`` in this package, "Fault injection".
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import http
import math
import threading
from collections.abc import Iterator
from typing import Any, ClassVar, TypeVar, overload

from ._wire import CAPSULE_ID_RE

MAX_SECONDS = 3600.0
TRANSITIONS = ("create", "pause", "resume", "destroy", "snapshot")
RESET_AT = ("request", "response", "body")
# The streams a CutStream can cut, by the route each one is served on.
STREAMS = {
    "exec": "/v1/capsules/{id}/exec/stream",
    "process": "/v1/capsules/{id}/processes/{selector}/stream",
    "pty": "/v1/capsules/{id}/pty",
    "events": "/v1/events/stream",
    "download": "/v1/capsules/{id}/files/stream/read",
}
_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "invalid_state",
    413: "too_large",
    429: "rate_limited",
    500: "internal_error",
    502: "agent_error",
    503: "host_unavailable",
}
_METHODS = ("GET", "POST", "DELETE", "*")

F = TypeVar("F", bound="Fault")


# validation ---------------------------------------------------------------------------
def _times(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"times must be an int >= 1 or None (every call), not {value!r}")
    if value < 1:
        raise ValueError(f"times must be >= 1 (or None for every call), got {value}")
    return value


def _seconds(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {value!r}")
    if not (math.isfinite(value) and 0 <= value <= MAX_SECONDS):
        raise ValueError(f"{name} must be between 0 and {MAX_SECONDS:g} seconds, got {value!r}")
    return float(value)


def _capsule(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not CAPSULE_ID_RE.match(value):
        raise ValueError(f"capsule_id must be a capsule id (cl- and 25 base36), not {value!r}")
    return value


def _choice(value: object, name: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


class _Pattern:
    """``"METHOD PATH"``: PATH is a route template (``/v1/capsules/{id}``) or a glob."""

    def __init__(self, spec: object) -> None:
        if not isinstance(spec, str):
            raise TypeError(f"match must be a string like 'GET /v1/capsules/{{id}}', not {spec!r}")
        parts = spec.split()
        if len(parts) != 2:
            raise ValueError(f"match must be 'METHOD PATH' (e.g. 'GET /v1/capsules'), got {spec!r}")
        method, path = parts[0].upper(), parts[1]
        if method not in _METHODS:
            raise ValueError(f"match method must be one of {', '.join(_METHODS)}; got {parts[0]!r}")
        if not path.startswith("/v1/"):
            raise ValueError(
                f"match path must start with /v1/ (the authenticated API), got {path!r}"
            )
        self.method, self.path, self.spec = method, path, f"{method} {path}"
        self.template = "{" in path
        if self.template:
            from ._app import ROUTES  # here: _app imports this module

            methods = ROUTES.get(path)
            if methods is None:
                known = ", ".join(sorted(ROUTES))
                raise ValueError(f"{path!r} is not a route template of the API; known: {known}")
            if method != "*" and method not in methods:
                raise ValueError(f"{path} answers {', '.join(sorted(methods))}, not {method}")

    def matches(self, method: str, path: str, template: str | None) -> bool:
        if self.method != "*" and self.method != method:
            return False
        if self.template:
            return template == self.path
        return fnmatch.fnmatchcase(path, self.path)


# rules ----------------------------------------------------------------------------------
class Fault:
    """A fault rule. ``hits`` counts how often it fired; ``remove()`` takes it off."""

    kind: ClassVar[str] = "fault"

    def __init__(self, *, times: int | None, capsule_id: str | None) -> None:
        self.times = _times(times)
        self.capsule_id = _capsule(capsule_id)
        self.hits = 0
        self._owner: Faults | None = None
        # In-flight waits (Delay, SlowTransition): removal ends them; release() some.
        self._gate = threading.Lock()
        self._gone = False
        self._released_upto = 0
        self._waiting: list[tuple[int | None, asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._holder: Faults | None = None  # fired out, with waits that may be in flight

    @property
    def remaining(self) -> int | None:
        """How many more times it fires (None: until removed)."""
        return None if self.times is None else self.times - self.hits

    @property
    def active(self) -> bool:
        """Whether it is on a server and can still fire."""
        return self._owner is not None

    def remove(self) -> None:
        """Take the rule off its server (nothing if it is not on one); a delay or a
        transition it is holding ends at once."""
        owner = self._owner or self._holder
        if owner is not None:
            owner.remove(self)

    def _for_capsule(self, capsule_id: str | None) -> bool:
        return self.capsule_id is None or self.capsule_id == capsule_id

    def _removed(self) -> None:
        """Called (under the registry's lock) once the rule is off its server."""
        with self._gate:
            self._gone = True
            self._wake(lambda ticket: True)

    def _wake(self, which: Any) -> None:
        keep = []
        for ticket, loop, event in self._waiting:
            if which(ticket):
                with contextlib.suppress(RuntimeError):  # its loop has closed
                    loop.call_soon_threadsafe(event.set)
            else:
                keep.append((ticket, loop, event))
        self._waiting = keep

    async def _wait(
        self, ticket: int | None, timeout: float | None, hurry: asyncio.Event | None = None
    ) -> None:
        """Sleep ``timeout`` (None: until released) unless removed, released or hurried."""
        event = asyncio.Event()
        with self._gate:
            if self._gone or (ticket is not None and ticket <= self._released_upto):
                return
            entry = (ticket, asyncio.get_running_loop(), event)
            self._waiting.append(entry)
        waits = [asyncio.ensure_future(event.wait())]
        if hurry is not None:
            waits.append(asyncio.ensure_future(hurry.wait()))
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
            with self._gate, contextlib.suppress(ValueError):
                self._waiting.remove(entry)

    def _describe(self) -> str:
        return ""

    def __repr__(self) -> str:
        scope = f" capsule_id={self.capsule_id}" if self.capsule_id else ""
        left = "every call" if self.times is None else f"{self.hits}/{self.times} fired"
        return f"<{type(self).__name__} {self._describe()}{scope} ({left})>"


class _CallFault(Fault):
    def __init__(self, match: str, *, times: int | None, capsule_id: str | None) -> None:
        self.pattern = _Pattern(match)
        super().__init__(times=times, capsule_id=capsule_id)

    def _fits(self, method: str, path: str, template: str | None, capsule_id: str | None) -> bool:
        return self.pattern.matches(method, path, template) and self._for_capsule(capsule_id)

    def _describe(self) -> str:
        return repr(self.pattern.spec)


class Respond(_CallFault):
    """Answer matching calls with ``status`` and the platform's error envelope.

    ``code`` defaults to the platform's code for the status (429 ``rate_limited``,
    503 ``host_unavailable``, ...), ``message`` to the status phrase; ``retry_after``
    (seconds) adds a ``Retry-After`` header. The handler does not run.
    """

    kind = "respond"

    def __init__(
        self,
        match: str,
        status: int,
        *,
        code: str | None = None,
        message: str | None = None,
        retry_after: float | None = None,
        times: int | None = 1,
        capsule_id: str | None = None,
    ) -> None:
        if isinstance(status, bool) or not isinstance(status, int):
            raise TypeError(f"status must be an int, not {status!r}")
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an error status (400-599), got {status}")
        for name, text in (("code", code), ("message", message)):
            if text is not None and (not isinstance(text, str) or not text):
                raise ValueError(f"{name} must be a non-empty string or None, not {text!r}")
        super().__init__(match, times=times, capsule_id=capsule_id)
        self.status = status
        self.code = code or _CODES.get(status, "error")
        self.message = message or http.HTTPStatus(status).phrase.lower()
        self.retry_after = None if retry_after is None else _seconds(retry_after, "retry_after")

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        value = self.retry_after
        return {"Retry-After": str(int(value)) if value.is_integer() else f"{value:g}"}

    def _describe(self) -> str:
        return f"{self.pattern.spec!r} -> {self.status} {self.code}"


class Reset(_CallFault):
    """Drop the connection of matching calls instead of answering.

    ``at="request"``: the request is not handled (a TCP reset on arrival).
    ``"response"``: it is handled, then the connection is reset instead of answered
    (the call may have taken effect). ``"body"``: the status line, the headers and
    half of the body are sent, then the connection is closed.
    """

    kind = "reset"

    def __init__(
        self,
        match: str,
        *,
        at: str = "request",
        times: int | None = 1,
        capsule_id: str | None = None,
    ) -> None:
        self.at = _choice(at, "at", RESET_AT)
        super().__init__(match, times=times, capsule_id=capsule_id)

    def _describe(self) -> str:
        return f"{self.pattern.spec!r} at={self.at}"


class Delay(_CallFault):
    """Hold matching calls ``seconds`` before they are handled (after auth)."""

    kind = "delay"

    def __init__(
        self,
        match: str,
        seconds: float,
        *,
        times: int | None = 1,
        capsule_id: str | None = None,
    ) -> None:
        self.seconds = _seconds(seconds, "seconds")
        super().__init__(match, times=times, capsule_id=capsule_id)

    def _describe(self) -> str:
        return f"{self.pattern.spec!r} +{self.seconds:g}s"


class CutStream(Fault):
    """Drop a stream's connection after the server sent ``after`` frames.

    ``stream``: ``"exec"`` (exec/stream WebSocket), ``"process"`` (process attach),
    ``"pty"``, ``"events"`` (SSE; ``:keepalive`` comments are not counted) or
    ``"download"`` (files/stream/read; counts body chunks of up to 64 KiB). The
    client sees the connection end without a close frame / mid-body.
    """

    kind = "cut"

    def __init__(
        self,
        stream: str,
        after: int,
        *,
        times: int | None = 1,
        capsule_id: str | None = None,
    ) -> None:
        self.stream = _choice(stream, "stream", tuple(STREAMS))
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise ValueError(
                f"after must be an int >= 0 (frames sent before the cut), got {after!r}"
            )
        if stream == "events" and capsule_id is not None:
            raise ValueError("the events stream belongs to no capsule: capsule_id must be None")
        super().__init__(times=times, capsule_id=capsule_id)
        self.after = after
        self.template = STREAMS[stream]

    def _describe(self) -> str:
        return f"{self.stream} after {self.after}"


class SlowTransition(Fault):
    """Make a lifecycle transition settle ``seconds`` later than configured.

    ``action``: ``create``, ``pause``, ``resume``, ``destroy`` or ``snapshot``; the
    transitional status (``starting``, ``pausing``, ...) lasts ``transition_delay``
    plus ``seconds``. ``seconds=None`` holds it until ``release()`` (or removal).
    """

    kind = "slow_transition"

    def __init__(
        self,
        action: str,
        seconds: float | None,
        *,
        times: int | None = 1,
        capsule_id: str | None = None,
    ) -> None:
        self.action = _choice(action, "action", TRANSITIONS)
        if action == "create" and capsule_id is not None:
            raise ValueError("a create has no capsule id yet: capsule_id must be None")
        self.seconds = None if seconds is None else _seconds(seconds, "seconds")
        super().__init__(times=times, capsule_id=capsule_id)

    def release(self) -> None:
        """Let every transition this rule holds so far settle (``seconds=None``)."""
        with self._gate:
            self._released_upto = self.hits
            self._wake(lambda ticket: ticket is not None and ticket <= self._released_upto)

    async def _hold(self, ticket: int, remaining: float, hurry: asyncio.Event) -> None:
        """Wait as this rule says (on the server loop); ``remaining``: the configured rest."""
        timeout = None if self.seconds is None else max(remaining + self.seconds, 0.0)
        await self._wait(ticket, timeout, hurry)

    def _describe(self) -> str:
        how = "until released" if self.seconds is None else f"+{self.seconds:g}s"
        return f"{self.action} {how}"


class DiskFull(Fault):
    """Writes through the files API fail as on a full disk (``write``,
    ``stream/write`` and ``mkdir``): ``502 agent_error``, "write PATH: no space left
    on device", which is what the platform's agent answers. Nothing is written.
    By default the disk stays full (``times=None``) until the rule is removed."""

    kind = "disk_full"

    def __init__(self, *, capsule_id: str | None = None, times: int | None = None) -> None:
        super().__init__(times=times, capsule_id=capsule_id)


# the registry ---------------------------------------------------------------------------
class Faults:
    """The fault rules of one ``LocalServer`` (``server.faults``). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Fault] = []
        self._holding: list[Fault] = []  # fired out, with waits that may be in flight

    @property
    def rules(self) -> tuple[Fault, ...]:
        """The rules in force, oldest first."""
        with self._lock:
            return tuple(self._rules)

    def __bool__(self) -> bool:
        return bool(self._rules)  # read without the lock: a hint for the hot path

    def add(self, rule: F) -> F:
        """Put ``rule`` in force; it is returned. Raises if it is already on a server."""
        if not isinstance(rule, Fault):
            raise TypeError(f"expected a fault rule (Respond, Reset, ...), not {rule!r}")
        with self._lock:
            if rule._owner is not None:
                raise ValueError(f"{rule!r} is already in force")
            if rule.remaining == 0:
                raise ValueError(f"{rule!r} has fired all its times already")
            rule._owner = self
            rule._gone = False  # taken off before, in force again
            self._rules.append(rule)
        return rule

    def remove(self, rule: Fault) -> None:
        """Take ``rule`` off (nothing if it is not in force here)."""
        with self._lock:
            self._drop(rule)

    def clear(self) -> None:
        """Take every rule off (and release every held transition)."""
        with self._lock:
            for rule in [*self._rules, *self._holding]:
                self._drop(rule)

    @overload
    @contextlib.contextmanager
    def inject(self, rule: F, /) -> Iterator[F]: ...
    @overload
    @contextlib.contextmanager
    def inject(
        self, rule: Fault, second: Fault, /, *rules: Fault
    ) -> Iterator[tuple[Fault, ...]]: ...
    @contextlib.contextmanager
    def inject(self, *rules: Fault) -> Iterator[Any]:
        """``with server.faults.inject(rule, ...) as rule:`` in force for the block only."""
        if not rules:
            raise TypeError("inject() needs at least one fault rule")
        added: list[Fault] = []
        try:
            for rule in rules:
                added.append(self.add(rule))
            yield added[0] if len(added) == 1 else tuple(added)
        finally:
            for rule in added:
                self.remove(rule)

    # shorthands: build a rule and put it in force -------------------------------------
    def respond(self, match: str, status: int, **options: Any) -> Respond:
        """``add(Respond(match, status, ...))``."""
        return self.add(Respond(match, status, **options))

    def reset(self, match: str, **options: Any) -> Reset:
        """``add(Reset(match, ...))``."""
        return self.add(Reset(match, **options))

    def delay(self, match: str, seconds: float, **options: Any) -> Delay:
        """``add(Delay(match, seconds, ...))``."""
        return self.add(Delay(match, seconds, **options))

    def cut_stream(self, stream: str, after: int, **options: Any) -> CutStream:
        """``add(CutStream(stream, after, ...))``."""
        return self.add(CutStream(stream, after, **options))

    def slow_transition(self, action: str, seconds: float | None, **options: Any) -> SlowTransition:
        """``add(SlowTransition(action, seconds, ...))``."""
        return self.add(SlowTransition(action, seconds, **options))

    def disk_full(self, **options: Any) -> DiskFull:
        """``add(DiskFull(...))``."""
        return self.add(DiskFull(**options))

    # the server's side (its loop) -----------------------------------------------------
    def _drop(self, rule: Fault, *, exhausted: bool = False) -> None:
        if rule in self._holding:  # removing an exhausted hold releases what it holds
            self._holding.remove(rule)
            rule._holder = None
            rule._removed()
        if rule._owner is not self:
            return
        rule._owner = None
        self._rules.remove(rule)
        if exhausted and isinstance(rule, (SlowTransition, Delay)):
            # It fires no more, but what it holds stays held until it ends or is removed.
            rule._holder = self
            self._holding.append(rule)
        else:
            rule._removed()

    def _fire(self, kind: type[F], fits: Any) -> tuple[F, int] | None:
        """The oldest rule of ``kind`` that ``fits``, counted as fired, and its ticket."""
        if not self._rules:
            return None
        with self._lock:
            for rule in self._rules:
                if isinstance(rule, kind) and fits(rule):
                    rule.hits += 1
                    ticket = rule.hits
                    if rule.remaining == 0:
                        self._drop(rule, exhausted=True)
                    return rule, ticket
        return None

    def call_faults(
        self, method: str, path: str, template: str | None, capsule_id: str | None
    ) -> tuple[Delay | None, Respond | Reset | None, CutStream | None]:
        """What happens to one call: a delay, an answer instead of the handler's, a cut."""

        def fits(rule: _CallFault) -> bool:
            return rule._fits(method, path, template, capsule_id)

        delay = self._fire(Delay, fits)
        answer = self._fire(_CallFault, lambda r: not isinstance(r, Delay) and fits(r))
        cut = None
        if answer is None:
            cut = self._fire(
                CutStream, lambda r: r.template == template and r._for_capsule(capsule_id)
            )
        return (
            delay[0] if delay else None,
            answer[0] if answer else None,  # type: ignore[return-value]
            cut[0] if cut else None,
        )

    def disk_is_full(self, capsule_id: str) -> bool:
        return self._fire(DiskFull, lambda r: r._for_capsule(capsule_id)) is not None

    def transition_hold(self, action: str, capsule_id: str) -> tuple[SlowTransition, int] | None:
        return self._fire(
            SlowTransition, lambda r: r.action == action and r._for_capsule(capsule_id)
        )


__all__ = [
    "CutStream",
    "Delay",
    "DiskFull",
    "Fault",
    "Faults",
    "Reset",
    "Respond",
    "SlowTransition",
]
