"""Scenario names: parsing and the small encoders used to build them.

A scenario name is ``<base>[-<modifier>...]``. The base picks the behaviour
(``status-503``, ``flaky-reset-2``, ``sse-drop`` ...); modifiers add headers to
the *failure* responses of that scenario (``-ra2`` adds ``Retry-After: 2``).
Modifiers are stripped from the right, so a numeric modifier may be negative
(``status-503-ra-10`` sends ``Retry-After: -10``).

The full reference of names lives in the docstring of ``faultserver.server``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.utils import formatdate

__all__ = [
    "Scenario",
    "ScenarioError",
    "hdr",
    "parse_scenario",
    "rawra",
    "split_key",
]


class ScenarioError(ValueError):
    """The scenario name does not match any known scenario."""


_NUM = r"(-?\d+(?:\.\d+)?)"
_HEX = r"((?:[0-9a-f]{2})*)"

# Modifiers, matched at the *end* of the name, one at a time.
_MODIFIERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("rawra", re.compile(r"-rawra" + _HEX + r"$")),
    ("radate", re.compile(r"-radate" + _NUM + r"$")),
    ("rams", re.compile(r"-rams" + _NUM + r"$")),
    ("ra", re.compile(r"-ra" + _NUM + r"$")),
    ("xsr", re.compile(r"-xsr(true|false)$")),
    ("hdr", re.compile(r"-hdr" + _HEX + r"$")),
    ("pad", re.compile(r"-(pad)$")),
)

_SECS = r"(\d+(?:\.\d+)?)"

# Bases: (kind, regex). The first group, when present, is the scenario argument.
_BASES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(rf"^{pattern}$"))
    for kind, pattern in (
        ("ok", r"ok"),
        ("echo", r"echo"),
        ("status", r"status-(\d{3})"),
        ("flaky", r"flaky-(\d{3}|reset|drop|hang|truncated)-(\d+)"),
        ("reset", r"reset"),
        ("resetafter", r"resetafter-(\d+)"),
        ("drop", r"drop"),
        ("truncated", r"truncated"),
        ("hang", r"hang"),
        ("hangfirst", r"hangfirst-(\d+)"),
        ("hangbody", r"hangbody"),
        ("drip", r"drip"),
        ("driphead", r"driphead"),
        ("dripfor", r"dripfor-" + _SECS),
        ("slow", r"slow-" + _SECS),
        ("slowdelete", r"slowdelete-" + _SECS),
        ("slowpost", r"slowpost-" + _SECS),
        ("badjson", r"badjson"),
        ("html200", r"html200"),
        ("html502", r"html502"),
        ("empty200", r"empty200"),
        ("null200", r"null200"),
        ("list200", r"list200"),
        ("obj200", r"obj200"),
        ("textjson", r"textjson"),
        ("unknownstatus", r"unknownstatus"),
        ("wrongtype", r"wrongtype"),
        ("huge", r"huge-(\d+)"),
        ("errlist", r"errlist(?:-(\d{3}))?"),
        ("errstr", r"errstr(?:-(\d{3}))?"),
        ("errempty", r"errempty(?:-(\d{3}))?"),
        ("errblank", r"errblank(?:-(\d{3}))?"),
        ("errhtml", r"errhtml(?:-(\d{3}))?"),
        ("echo400", r"echo400"),
        ("redirect", r"redirect"),
        ("redirect301", r"redirect301"),
        ("mix", r"mix"),
        ("mixhang", r"mixhang"),
        ("sse-ok", r"sse-ok"),
        ("sse-keepalive", r"sse-keepalive-(\d+)"),
        ("sse-silent", r"sse-silent"),
        ("sse-bad", r"sse-bad"),
        ("sse-drop", r"sse-drop"),
        ("sse-newevent", r"sse-newevent"),
        ("sse-idretry", r"sse-idretry"),
        ("wsok", r"wsok"),
        ("wsstream", r"wsstream"),
        ("wstrunc", r"wstrunc"),
        ("wsreset", r"wsreset"),
        ("wshang", r"wshang"),
        ("wsclose", r"wsclose"),
        ("wsbadjson", r"wsbadjson"),
        ("ws502html", r"ws502html"),
        ("wsstatus", r"ws(\d{3})"),
    )
)

# Scenario kinds whose numeric argument is an HTTP status for the error body.
_ERROR_BODY_KINDS = frozenset({"errlist", "errstr", "errempty", "errblank", "errhtml"})


@dataclass(frozen=True)
class Scenario:
    """A parsed scenario name.

    ``kind`` is the base name without arguments (``"flaky"``, ``"status"`` ...).
    ``arg`` is the first argument as text (``"503"``, ``"reset"``, ``"2.5"``),
    ``n`` the second numeric argument (flaky count). ``extra_headers`` holds the
    headers from modifiers, except HTTP-date Retry-After values which depend on
    the time of the response and are kept in ``retry_after_date`` instead.
    """

    name: str
    kind: str
    arg: str | None = None
    n: int | None = None
    extra_headers: tuple[tuple[str, str], ...] = ()
    retry_after_date: float | None = None
    pad: bool = False
    modifiers: tuple[str, ...] = field(default=())

    @property
    def status(self) -> int | None:
        """The HTTP status carried by the name, if any."""
        if self.kind in {"status", "wsstatus"}:
            return int(self.arg or 0)
        if self.kind == "flaky" and self.arg is not None and self.arg.isdigit():
            return int(self.arg)
        if self.kind in _ERROR_BODY_KINDS:
            return int(self.arg) if self.arg else 500
        return None

    @property
    def seconds(self) -> float:
        """The numeric argument as float (``slow-2.5`` -> 2.5)."""
        return float(self.arg or 0)

    def failure_headers(self, now: float) -> list[tuple[str, str]]:
        """Headers from modifiers, rendered for a response sent at wall time ``now``."""
        headers = list(self.extra_headers)
        if self.retry_after_date is not None:
            offset = self.retry_after_date
            # An HTTP-date has one-second resolution. For future dates the
            # server sends the response 0.5-0.8 s into a wall-clock
            # second (see ``date_alignment_delay``) and names the next whole
            # second + offset, so the wait a client derives is in
            # (offset, offset + 0.5]: never shorter than asked, never much longer.
            when = int(now) + 1 + offset if offset > 0 else now + offset
            headers.append(("Retry-After", formatdate(when, usegmt=True)))
        return headers

    def date_alignment_delay(self, now: float) -> float:
        """Seconds to wait before answering so ``failure_headers`` is precise."""
        if self.retry_after_date is None or self.retry_after_date <= 0:
            return 0.0
        # Answer at 0.5-0.8 into a second: late enough that the next whole second is at
        # most 0.5 s away, early enough that a response read a little later still sees
        # more than ``offset`` seconds left.
        frac = now % 1.0
        if 0.5 <= frac < 0.8:
            return 0.0
        return (0.65 if frac < 0.5 else 1.65) - frac


def _decode_hex(text: str) -> str:
    return bytes.fromhex(text).decode("latin-1")


def parse_scenario(name: str) -> Scenario:
    """Parse a scenario name (without the ``-n<nonce>`` suffix).

    Raises ``ScenarioError`` for unknown names, so typos fail loudly in
    ``FaultServer.url_for`` instead of silently behaving like ``ok``.
    """
    rest = name
    headers: list[tuple[str, str]] = []
    retry_after_date: float | None = None
    pad = False
    modifiers: list[str] = []
    # Bounded: a name cannot carry more modifiers than it has characters.
    for _ in range(len(name)):
        for mod, pattern in _MODIFIERS:
            m = pattern.search(rest)
            if m is None:
                continue
            value = m.group(1)
            modifiers.append(mod)
            if mod == "ra":
                headers.append(("Retry-After", value))
            elif mod == "rams":
                headers.append(("retry-after-ms", value))
            elif mod == "rawra":
                headers.append(("Retry-After", _decode_hex(value)))
            elif mod == "radate":
                retry_after_date = float(value)
            elif mod == "xsr":
                headers.append(("x-should-retry", value))
            elif mod == "hdr":
                header_name, _, header_value = _decode_hex(value).partition(":")
                headers.append((header_name.strip(), header_value.strip()))
            elif mod == "pad":
                pad = True
            rest = rest[: m.start()]
            break
        else:
            break
    for kind, pattern in _BASES:
        m = pattern.match(rest)
        if m is None:
            continue
        groups = m.groups()
        arg = groups[0] if groups else None
        n = int(groups[1]) if len(groups) > 1 and groups[1] is not None else None
        return Scenario(
            name=name,
            kind=kind,
            arg=arg,
            n=n,
            # Modifiers were collected right to left; restore written order.
            extra_headers=tuple(reversed(headers)),
            retry_after_date=retry_after_date,
            pad=pad,
            modifiers=tuple(reversed(modifiers)),
        )
    raise ScenarioError(f"unknown fault scenario {name!r}")


_KEY_RE = re.compile(r"^(?P<name>.+)-n(?P<nonce>\d+)$")


def split_key(key: str) -> tuple[str, str | None]:
    """Split ``<name>-n<nonce>`` into ``(name, nonce)``; a bare name has no nonce."""
    m = _KEY_RE.match(key)
    if m is None:
        return key, None
    return m.group("name"), m.group("nonce")


def rawra(value: str) -> str:
    """Modifier sending ``Retry-After: <value>`` verbatim (any text, even empty).

    >>> rawra("abc")
    'rawra616263'
    """
    return "rawra" + value.encode("latin-1").hex()


def hdr(name: str, value: str) -> str:
    """Modifier adding an arbitrary response header to failure responses."""
    return "hdr" + f"{name}: {value}".encode("latin-1").hex()
