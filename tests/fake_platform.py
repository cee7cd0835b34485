"""An in-memory stand-in for the platform's API 0.2.2 lifecycle, for httpx.MockTransport.

It answers the way openapi-0.2.2.yaml says the platform does: create, pause, resume,
destroy and snapshot answer 202 and the capsule passes through a transitional status;
a call the status does not allow is a 409; a template exists only once its snapshot is
over. Transitions advance by one step per GET of the capsule, so a test is exact about
how many looks a wait takes and never depends on timing. The event stream is absent
(404), so the SDK's polling path is what runs here; the event path runs against
wrenn.local over a real socket.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.helpers import error_response, json_response

BASE_TEMPLATES = ("minimal-ubuntu", "minimal")


@dataclass
class FakeCapsule:
    id: str
    template: str
    status: str
    metadata: dict[str, str]
    ahead: list[str] = field(default_factory=list)  # statuses still to pass through
    on_settle: Any = None  # run when ``ahead`` empties (a snapshot's template appears)

    def body(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "template": self.template,
            "vcpus": 1,
            "memory_mb": 512,
            "timeout_sec": 0,
            "created_at": "2026-12-01T10:00:00Z",
            "metadata": self.metadata or None,
        }


@dataclass
class FakePlatform:
    """The handler. ``steps`` is how many GETs a transitional status lasts.

    ``fail`` names transitions that go wrong once: "create" lands in ``error``, "pause"
    and "resume" roll back, "snapshot" returns the capsule without making a template.
    ``stuck`` names transitions that never finish.
    """

    steps: int = 2
    forget_destroyed: bool = False  # a destroyed capsule is then a 404, not ``stopped``
    fail: set[str] = field(default_factory=set)
    stuck: set[str] = field(default_factory=set)
    lose_answers: int = 0  # creates whose capsule is made but whose answer is lost
    capsules: dict[str, FakeCapsule] = field(default_factory=dict)
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    _next_id: int = 0

    def __post_init__(self) -> None:
        for name in BASE_TEMPLATES:
            self.templates[name] = {
                "name": name,
                "type": "base",
                "platform": True,
                "protected": True,
                "created_at": "2026-01-01T00:00:00Z",
            }

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def count(self, call: str) -> int:
        return self.requests.count(call)

    # --- routing -------------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api")
        parts = path.strip("/").split("/")
        self.requests.append(f"{request.method} {path}")
        if parts[:2] == ["v1", "events"]:
            return error_response(404, "not_found", "no event stream here")
        if parts[:2] == ["v1", "snapshots"]:
            return self._snapshots(request, parts[2:])
        if parts[:2] != ["v1", "capsules"]:
            return error_response(404, "not_found", f"no route {path}")
        if len(parts) == 2:
            if request.method == "POST":
                return self._create(json.loads(request.content or b"{}"))
            return json_response(200, [c.body() for c in self.capsules.values()])
        capsule = self.capsules.get(parts[2])
        if capsule is None:
            return error_response(404, "not_found", "capsule not found")
        action = parts[3] if len(parts) > 3 else None
        if action is None and request.method == "GET":
            self._advance(capsule)
            return json_response(200, capsule.body())
        if action is None and request.method == "DELETE":
            return self._start(
                capsule, "destroy", {"running", "paused", "error"}, "stopping", "stopped"
            )
        if action == "pause":
            return self._start(capsule, "pause", {"running"}, "pausing", "paused", "running")
        if action == "resume":
            return self._start(capsule, "resume", {"paused"}, "resuming", "running", "paused")
        if action == "ping":
            if capsule.status != "running":
                return self._conflict(f"ping while {capsule.status}")
            return httpx.Response(204)
        return error_response(404, "not_found", f"no route {path}")

    # --- transitions ---------------------------------------------------------------

    def _advance(self, capsule: FakeCapsule) -> None:
        if capsule.ahead:
            capsule.status = capsule.ahead.pop(0)
            if not capsule.ahead and capsule.on_settle is not None:
                capsule.on_settle()
                capsule.on_settle = None

    def _plan(
        self, capsule: FakeCapsule, action: str, via: str, end: str, back: str | None
    ) -> None:
        capsule.status = via
        if action in self.stuck:
            capsule.ahead = [via] * 10_000
            return
        capsule.ahead = [via] * (self.steps - 1)
        if action in self.fail:
            self.fail.discard(action)
            end = back if back is not None else "error"
        capsule.ahead.append(end)

    def _start(
        self,
        capsule: FakeCapsule,
        action: str,
        allowed: set[str],
        via: str,
        end: str,
        back: str | None = None,
    ) -> httpx.Response:
        if capsule.status not in allowed:
            return self._conflict(f"{action} while {capsule.status}")
        self._plan(capsule, action, via, end, back)
        if action == "destroy":
            if self.forget_destroyed:
                capsule.on_settle = lambda: self.capsules.pop(capsule.id, None)
            return httpx.Response(202)
        return json_response(202, capsule.body())

    def _conflict(self, what: str) -> httpx.Response:
        self.conflicts.append(what)
        return error_response(409, "invalid_state", what)

    def _create(self, body: dict[str, Any]) -> httpx.Response:
        template = body.get("template") or "minimal-ubuntu"
        if template not in self.templates:
            return error_response(404, "not_found", f"template {template} not found")
        self._next_id += 1
        capsule = FakeCapsule(
            f"cl-fake{self._next_id:020d}", template, "pending", body.get("metadata") or {}
        )
        self.capsules[capsule.id] = capsule
        self._plan(capsule, "create", "starting", "running", None)
        if self.lose_answers:
            self.lose_answers -= 1
            raise httpx.ReadError("the connection dropped before the answer")
        return json_response(202, capsule.body())

    def _snapshots(self, request: httpx.Request, rest: list[str]) -> httpx.Response:
        if request.method == "GET":
            kind = request.url.params.get("type")
            listed = [t for t in self.templates.values() if kind is None or t["type"] == kind]
            return json_response(200, listed)
        if request.method == "DELETE":
            template = self.templates.get(rest[0]) if rest else None
            if template is None:
                return error_response(404, "not_found", "template not found")
            if template.get("protected"):
                return error_response(403, "forbidden", "protected template")
            del self.templates[rest[0]]
            return httpx.Response(204)
        body = json.loads(request.content)
        capsule = self.capsules.get(body["sandbox_id"])
        if capsule is None:
            return error_response(404, "not_found", "capsule not found")
        name = body.get("name") or f"tpl-{len(self.templates)}"
        if name in self.templates:
            return self._conflict(f"template {name} exists")
        if capsule.status not in ("running", "paused"):
            return self._conflict(f"snapshot while {capsule.status}")
        origin = capsule.status
        failing = "snapshot" in self.fail
        self._plan(capsule, "snapshot", "snapshotting", origin, origin)
        if not failing:

            def make_template() -> None:
                self.templates[name] = {
                    "name": name,
                    "type": "snapshot",
                    "platform": False,
                    "protected": False,
                    "created_at": "2026-12-01T10:00:05Z",
                }

            capsule.on_settle = make_template
        return json_response(202, capsule.body())


# --- a scripted event stream ----------------------------------------------------------

DROP = "drop"  # the connection breaks (a read error) after the frames
END = "end"  # the server ends the body cleanly after the frames
SILENT = "silent"  # the connection stays open but silent past the read timeout


def sse_frame(kind: str, resource_id: str, event_id: str | None = None) -> bytes:
    """One SSE frame of the 0.2.2 event model."""
    payload: dict[str, Any] = {"event": kind, "resource": {"id": resource_id, "type": "capsule"}}
    if kind != "connected":
        payload["outcome"] = "success"
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(payload)}\n\n".encode()


class _Body(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that yields its frames one chunk each, then ends or breaks."""

    def __init__(self, frames: list[bytes], ending: str) -> None:
        self._frames = frames
        self._ending = ending

    def __iter__(self) -> Any:
        yield from self._frames
        self._end()

    async def __aiter__(self) -> Any:
        for frame in self._frames:
            yield frame
        self._end()

    def _end(self) -> None:
        if self._ending == DROP:
            raise httpx.ReadError("connection reset by peer")
        if self._ending == SILENT:
            raise httpx.ReadTimeout("no data within the read timeout")


@dataclass
class FakeEventFeed:
    """``GET /v1/events/stream`` answered from a script, one entry per connection.

    An entry is an error status (answered with that status and the JSON envelope) or a
    ``(frames, ending)`` pair: the frames are sent, then the body ends (``END``),
    breaks (``DROP``) or times out (``SILENT``, as a silent connection past the idle
    timeout would, without the wait). Connections past the script are answered 503. Each connection's
    ``Last-Event-ID`` header is recorded, so a test knows what the client asked to
    resume from. Deterministic: nothing here depends on time.
    """

    script: list[int | tuple[list[bytes], str]]
    resumed_from: list[str | None] = field(default_factory=list)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/v1/events/stream"):
            return error_response(404, "not_found", "only the event stream is scripted")
        self.resumed_from.append(request.headers.get("last-event-id"))
        step = len(self.resumed_from) - 1
        entry = self.script[step] if step < len(self.script) else 503
        if isinstance(entry, int):
            codes = {401: "unauthorized", 403: "forbidden", 404: "not_found"}
            return error_response(entry, codes.get(entry, "unavailable"), f"scripted {entry}")
        frames, ending = entry
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, stream=_Body(frames, ending)
        )
