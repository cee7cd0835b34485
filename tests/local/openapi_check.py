"""Check HTTP and WebSocket traffic of wrenn.local against the OpenAPI spec.

The spec (``openapi-0.2.2.yaml`` next to this file, API 0.2.2) says ``openapi:
3.1.0`` but its schemas are written in the OpenAPI 3.0 dialect (``nullable: true``).  They are
turned into plain JSON Schema (``$ref`` inlined, ``nullable`` made a type union)
and validated with ``jsonschema`` plus strict checks for the formats the spec
declares (``date-time``, ``date``, ``int32``, ``int64``).

Every departure from the spec is an :class:`Observation`.  It either matches an
entry of the caller's allow-list (a :class:`Difference`, recorded as exercised)
or it is a violation, raised as :class:`SpecViolation` with every detail.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import yaml

SPEC_PATH = Path(__file__).with_name("openapi-0.2.2.yaml")

_RFC3339 = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(\.\d+)?([Zz]|[+-]\d\d:\d\d)$"
)
_DATE = re.compile(r"^\d{4}-\d\d-\d\d$")
_OPENAPI_ONLY = {"example", "examples", "discriminator", "xml", "externalDocs", "deprecated"}


class SpecViolation(AssertionError):
    """The server answered something the spec does not allow and no allow-list entry covers."""


# --------------------------------------------------------------------------- formats
FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    m = _RFC3339.match(value)
    if m is None:
        raise ValueError(f"not RFC 3339: {value!r}")
    dt.datetime.fromisoformat(value[:19])  # a real calendar date and time
    return True


@FORMATS.checks("date", raises=ValueError)
def _date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if _DATE.match(value) is None:
        raise ValueError(f"not YYYY-MM-DD: {value!r}")
    dt.date.fromisoformat(value)
    return True


@FORMATS.checks("int32")
def _int32(value: object) -> bool:
    return not isinstance(value, int) or -(2**31) <= value < 2**31


@FORMATS.checks("int64")
def _int64(value: object) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**63


# --------------------------------------------------------------------------- spec
def load_spec(path: Path = SPEC_PATH) -> dict[str, Any]:
    with path.open("rb") as f:
        spec = yaml.safe_load(f)
    assert isinstance(spec, dict) and "paths" in spec, f"not an OpenAPI document: {path}"
    return spec


def _resolve_pointer(spec: Mapping[str, Any], ref: str) -> Any:
    """The object a local ``#/a/b`` reference points at; ``None`` if it is missing."""
    if not ref.startswith("#/"):
        raise ValueError(f"only local $refs are supported: {ref}")
    node: Any = spec
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def to_json_schema(spec: Mapping[str, Any], schema: Any, _seen: tuple[str, ...] = ()) -> Any:
    """An OpenAPI 3.0 schema as a self-contained JSON Schema (refs inlined, nullable handled)."""
    if isinstance(schema, list):
        return [to_json_schema(spec, s, _seen) for s in schema]
    if not isinstance(schema, Mapping):
        return schema
    if "$ref" in schema:
        ref = schema["$ref"]
        if ref in _seen:
            raise ValueError(f"recursive $ref {ref} is not supported")
        target = _resolve_pointer(spec, ref)
        if target is None:
            raise KeyError(f"unresolvable $ref {ref}")
        return to_json_schema(spec, target, (*_seen, ref))
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _OPENAPI_ONLY or key == "nullable":
            continue
        if key in ("properties", "patternProperties"):
            out[key] = {k: to_json_schema(spec, v, _seen) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            out[key] = to_json_schema(spec, value, _seen)
        else:
            out[key] = value
    if schema.get("nullable") is True:
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = [*types, "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def validator_for(schema: Any) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema, format_checker=FORMATS)


# --------------------------------------------------------------------------- observations
@dataclass(frozen=True)
class Observation:
    """One way an answer departs from the spec.

    ``kind`` is ``route`` (operation not in the spec), ``status`` (status not
    listed for the operation), ``schema`` (body or frame does not validate),
    ``spec`` (a defect of the spec itself met while checking), ``ws`` (a
    WebSocket difference) or ``behaviour`` (a documented behaviour that differs).
    """

    kind: str
    operation: str
    status: int | None = None
    code: str | None = None
    message: str | None = None
    detail: str = ""

    def __str__(self) -> str:
        parts = [f"[{self.kind}] {self.operation}"]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.code is not None:
            parts.append(f"code={self.code!r}")
        if self.message is not None:
            parts.append(f"message={self.message!r}")
        if self.detail:
            parts.append(self.detail)
        return " ".join(parts)


@dataclass(frozen=True)
class Difference:
    """An allow-list entry: a known, intentional departure from the spec."""

    id: str
    reason: str
    kind: str
    operations: frozenset[str] | None = None  # None: any operation
    statuses: frozenset[int] | None = None
    codes: frozenset[str] | None = None
    message: str | None = None
    detail: str | None = None  # a substring of Observation.detail

    def matches(self, obs: Observation) -> bool:
        return (
            obs.kind == self.kind
            and (self.operations is None or obs.operation in self.operations)
            and (self.statuses is None or obs.status in self.statuses)
            and (self.codes is None or obs.code in self.codes)
            and (self.message is None or obs.message == self.message)
            and (self.detail is None or self.detail in obs.detail)
        )


def ops(*names: str) -> frozenset[str]:
    return frozenset(names)


@dataclass
class Conformance:
    spec: dict[str, Any]
    allow: list[Difference]
    exercised: dict[str, list[Observation]] = field(default_factory=dict)
    checked: set[tuple[str, int]] = field(default_factory=set)  # (operation, status)
    _validators: dict[str, jsonschema.protocols.Validator] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ids = [d.id for d in self.allow]
        assert len(ids) == len(set(ids)), f"duplicate allow-list ids: {ids}"
        self.exercised = {d.id: [] for d in self.allow}

    # -- spec lookups ---------------------------------------------------------------
    def operation(self, method: str, template: str) -> dict[str, Any] | None:
        op = self.spec["paths"].get(template, {}).get(method.lower())
        return op if isinstance(op, dict) else None

    def has_operation(self, name: str) -> bool:
        method, template = name.split(" ", 1)
        return self.operation(method, template) is not None

    def _validator(self, key: str, schema: Any) -> jsonschema.protocols.Validator:
        if key not in self._validators:
            self._validators[key] = validator_for(to_json_schema(self.spec, schema))
        return self._validators[key]

    def error_validator(self) -> jsonschema.protocols.Validator:
        return self._validator("#/components/schemas/Error", {"$ref": "#/components/schemas/Error"})

    # -- bookkeeping ----------------------------------------------------------------
    def observe(self, obs: Observation) -> None:
        """Record ``obs`` against the allow-list; raise if no entry covers it."""
        self.settle([obs])

    def settle(self, observations: Iterable[Observation]) -> None:
        unexplained = []
        for obs in observations:
            # First match wins: list specific entries before general ones.
            hit = next((d for d in self.allow if d.matches(obs)), None)
            if hit is None:
                unexplained.append(obs)
            else:
                self.exercised[hit.id].append(obs)
        if unexplained:
            raise SpecViolation(
                f"response departs from {SPEC_PATH.name} (not on the allow-list):\n  "
                + "\n  ".join(map(str, unexplained))
            )

    def unexercised(self) -> list[Difference]:
        return [d for d in self.allow if not self.exercised[d.id]]

    # -- JSON bodies and frames -----------------------------------------------------
    def schema_errors(
        self, operation: str, body: Any, schema_key: str, schema: Any, status: int | None = None
    ) -> list[Observation]:
        found = []
        v = self._validator(schema_key, schema)
        for err in sorted(v.iter_errors(body), key=lambda e: list(e.absolute_path)):
            path = "$" + "".join(
                f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path
            )
            found.append(
                Observation(
                    "schema",
                    operation,
                    status=status,
                    detail=f"{path}: {err.validator}={err.validator_value!r} got {err.instance!r}",
                )
            )
        return found

    def check_json(
        self, operation: str, body: Any, schema_key: str, schema: Any, status: int | None = None
    ) -> None:
        self.settle(self.schema_errors(operation, body, schema_key, schema, status))

    # -- HTTP responses -------------------------------------------------------------
    def check(
        self,
        method: str,
        template: str,
        r: httpx.Response,
        *,
        local_schema: Any = None,
    ) -> None:
        """Validate ``r`` (already read) as an answer of ``method template``.

        ``local_schema`` is the schema used for a route the spec lacks (its
        absence must then be allow-listed).
        """
        name = f"{method.upper()} {template}"
        status = r.status_code
        observations: list[Observation] = []
        code = message = None
        if status >= 400:
            code, message = self._envelope(name, r)
        op = self.operation(method, template)
        declared: Mapping[str, Any] | None = None
        if op is None:
            observations.append(Observation("route", name, status, code, message))
            schema_key, schema = f"local:{name}:{status}", local_schema
            content_types = {"application/json"} if local_schema is not None else set()
        else:
            responses = op.get("responses", {})
            declared = responses.get(str(status))
            if declared is None:
                observations.append(
                    Observation(
                        "status",
                        name,
                        status,
                        code,
                        message,
                        f"spec lists {sorted(responses)}",
                    )
                )
            elif "$ref" in declared:
                target = _resolve_pointer(self.spec, declared["$ref"])
                if target is None:
                    observations.append(
                        Observation(
                            "spec", name, status, code, message, f"undefined {declared['$ref']}"
                        )
                    )
                    declared = None  # validated as an Error envelope below
                else:
                    declared = target
        self.settle(observations)
        if op is not None:
            schema_key, schema, content_types = self._declared_body(name, status, declared)
        self.checked.add((name, status))
        self._check_body(name, r, schema_key, schema, content_types)

    def _declared_body(
        self, name: str, status: int, declared: Mapping[str, Any] | None
    ) -> tuple[str, Any, set[str]]:
        if declared is None:  # undeclared status or undefined $ref: any Error envelope
            if status < 400:
                raise SpecViolation(f"{name}: allow-listed success status {status} has no schema")
            return (
                "#/components/schemas/Error",
                {"$ref": "#/components/schemas/Error"},
                {"application/json"},
            )
        content = declared.get("content") or {}
        if "application/json" in content:
            return (
                f"{name}:{status}",
                content["application/json"].get("schema", {}),
                {"application/json"},
            )
        return f"{name}:{status}", None, set(content)

    def _check_body(
        self, name: str, r: httpx.Response, schema_key: str, schema: Any, content_types: set[str]
    ) -> None:
        ctype = r.headers.get("content-type", "").split(";")[0].strip()
        where = f"{name} -> {r.status_code}"
        if r.status_code == 101:  # a WebSocket upgrade: frames are checked by check_frame
            return
        if not content_types:
            assert r.content == b"", f"{where}: spec declares no body, got {r.content[:200]!r}"
            return
        assert ctype in content_types, f"{where}: content-type {ctype!r}, spec: {content_types}"
        if ctype != "application/json" or schema is None:
            return
        try:
            body = json.loads(r.content)
        except ValueError as exc:
            raise SpecViolation(f"{where}: body is not JSON ({exc}): {r.content[:200]!r}") from None
        self.check_json(name, body, schema_key, schema, r.status_code)

    def _envelope(self, name: str, r: httpx.Response) -> tuple[str, str]:
        """Every error is the ``{"error":{"code","message"}}`` envelope (stricter than
        the spec's ``Error`` schema, which requires no property)."""
        where = f"{name} -> {r.status_code}"
        try:
            body = json.loads(r.content)
        except ValueError:
            raise SpecViolation(f"{where}: error body is not JSON: {r.content[:200]!r}") from None
        errors = list(self.error_validator().iter_errors(body))
        if errors:
            raise SpecViolation(f"{where}: not an Error: {[e.message for e in errors]}")
        err = body.get("error") if isinstance(body, dict) else None
        code = err.get("code") if isinstance(err, dict) else None
        message = err.get("message") if isinstance(err, dict) else None
        if not (isinstance(code, str) and code and isinstance(message, str) and message):
            raise SpecViolation(f"{where}: error envelope without code/message: {body!r}")
        return code, message


# --------------------------------------------------------------------------- WebSocket frames
# The spec gives WebSocket frames only in prose (the descriptions of
# `/v1/capsules/{id}/exec/stream`, `.../processes/{selector}/stream` and
# `.../pty`).  These schemas transcribe that prose, one per JSON frame type.
# PTY output is raw binary frames (API 0.2.2), so it has no JSON schema.
def _frame(kind: str, props: dict[str, Any], required: Iterable[str] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"type": {"const": kind}, **props},
        "required": ["type", *required],
    }


_INT = {"type": "integer", "format": "int64"}
_STR = {"type": "string"}

PROCESS_FRAMES: dict[str, dict[str, Any]] = {
    "start": _frame("start", {"pid": _INT}),
    "stdout": _frame("stdout", {"data": _STR}, ["data"]),
    "stderr": _frame("stderr", {"data": _STR}, ["data"]),
    "exit": _frame("exit", {"exit_code": _INT}, ["exit_code"]),
    "error": _frame("error", {"data": _STR}, ["data"]),
}
PTY_FRAMES: dict[str, dict[str, Any]] = {
    "started": _frame("started", {"tag": _STR, "pid": _INT}, ["tag", "pid"]),
    "exit": _frame("exit", {"exit_code": _INT}, ["exit_code"]),
    "error": _frame("error", {"data": _STR, "fatal": {"type": "boolean"}}, ["data"]),
    "ping": _frame("ping", {}),
}


def check_frame(
    conf: Conformance, operation: str, frame: Any, frames: Mapping[str, dict[str, Any]]
) -> None:
    """Validate one JSON text frame against the frame types the spec describes."""
    kind = frame.get("type") if isinstance(frame, dict) else None
    if not isinstance(kind, str) or kind not in frames:
        conf.observe(
            Observation("ws", operation, detail=f"frame type {kind!r} not in {sorted(frames)}")
        )
        return
    conf.check_json(operation, frame, f"frame:{operation}:{kind}", frames[kind])


__all__ = [
    "PROCESS_FRAMES",
    "PTY_FRAMES",
    "SPEC_PATH",
    "Conformance",
    "Difference",
    "Observation",
    "SpecViolation",
    "check_frame",
    "load_spec",
    "ops",
    "to_json_schema",
    "validator_for",
]
