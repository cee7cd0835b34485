"""Starlette routes for the REST API, the SSE stream and the WebSockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import Message

from .. import _version
from . import _proxy, _validate, _ws
from ._auth import ApiKeyMiddleware
from ._capsules import Manager
from ._events import API_KEY_ACTOR
from ._faultmw import FaultMiddleware, TransportOf
from ._faults import Faults
from ._files import CapsuleFiles, FsError
from ._wire import ApiError, GoJSONResponse, bad_request, go_json, rfc3339

log = logging.getLogger("wrenn.local")

MAX_WRITE_BYTES = 100 * 1024 * 1024
MAX_JSON_BODY = _validate.MAX_JSON_BODY
READ_CHUNK = 64 * 1024

Handler = Callable[[Request], Awaitable[Response]]


class _TooLarge(Exception):
    pass


def _fs_call(fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
    async def run() -> Any:
        try:
            return await asyncio.to_thread(fn, *args)
        except FsError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None

    return run()


async def _json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, at most MAX_JSON_BODY bytes (413 past that)."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_JSON_BODY:
        raise _body_too_large()
    chunks: list[bytes] = []
    size = 0
    # Counted as it arrives: a body without (or lying about) Content-Length is
    # refused once it is too large, never buffered whole.
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_JSON_BODY:
            raise _body_too_large()
        chunks.append(chunk)
    raw = b"".join(chunks)
    body = _validate.loads(raw) if raw else None
    if not isinstance(body, dict):
        raise bad_request("invalid JSON body")
    return body


def _body_too_large() -> ApiError:
    return ApiError(413, "too_large", f"request body exceeds {MAX_JSON_BODY} bytes")


def _path_field(body: dict[str, Any]) -> str:
    path = _validate.field(body, "path", str)
    if not path:
        raise bad_request("path is required")
    return str(path)


class Api:
    def __init__(
        self, manager: Manager, sse_keepalive: float, faults: Faults | None = None
    ) -> None:
        self.m = manager
        self.sse_keepalive = sse_keepalive
        self.faults = faults

    def _disk_full(self, request: Request, op: str, path: str) -> None:
        """A DiskFull fault: the write fails as the platform's agent reports ENOSPC."""
        if self.faults and self.faults.disk_is_full(request.path_params["id"]):
            raise ApiError(502, "agent_error", f"{op} {path}: no space left on device")

    # health and events --------------------------------------------------------
    async def health(self, request: Request) -> Response:
        b = self.m.backend
        return GoJSONResponse(
            {
                "status": "ok",
                "version": _version.__version__,
                "isolation": b.kind,
                "isolation_reason": b.reason,
                "freeze": b.freeze_mode,
                "disk_quota": self.m.disks.enabled,
            }
        )

    async def events(self, request: Request) -> Response:
        bus = self.m.events
        last_event_id = request.headers.get("last-event-id")
        keepalive = self.sse_keepalive

        def frame(event_id: int, payload: dict[str, Any]) -> bytes:
            # The platform's two lines, then the id: the platform sends none.
            data = go_json(payload).rstrip(b"\n")
            kind = str(payload["event"]).encode()
            tail = b"\nid: " + str(event_id).encode() + b"\n\n"
            return b"event: " + kind + b"\ndata: " + data + tail

        async def stream() -> AsyncIterator[bytes]:
            # Subscribed here, where the finally below is sure to unsubscribe; what is
            # published from now on is queued, and the replay is what came before.
            sub, resumed_from, replay = bus.subscribe(last_event_id)
            try:
                connected = {
                    "event": "connected",
                    "resource": {"id": "events", "type": "stream"},
                    "actor": API_KEY_ACTOR,
                    "timestamp": rfc3339(time.time()),
                }
                # Its id says where this stream continues from (see _events.py).
                yield frame(resumed_from, connected)
                for event_id, payload in replay:
                    yield frame(event_id, payload)
                while not sub.finished():
                    try:
                        item = await asyncio.wait_for(sub.queue.get(), keepalive)
                    except asyncio.TimeoutError:
                        yield b":keepalive\n\n"
                        continue
                    if item is None:
                        return
                    yield frame(*item)
            finally:
                bus.unsubscribe(sub)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # capsules -----------------------------------------------------------------
    # Lifecycle calls answer 202 at once; the capsule is then in its transitional status.
    async def create(self, request: Request) -> Response:
        body = await _json_body(request)
        return GoJSONResponse(self.m.lifecycle.create(body), status_code=202)

    async def list_capsules(self, request: Request) -> Response:
        return GoJSONResponse(self.m.list_capsules())

    async def stats(self, request: Request) -> Response:
        return GoJSONResponse(self.m.metrics.stats(request.query_params.get("range")))

    async def usage(self, request: Request) -> Response:
        q = request.query_params
        return GoJSONResponse(self.m.metrics.usage(q.get("from"), q.get("to")))

    async def get(self, request: Request) -> Response:
        return GoJSONResponse(await self.m.get(request.path_params["id"]))

    async def destroy(self, request: Request) -> Response:
        self.m.lifecycle.destroy(request.path_params["id"])
        return Response(status_code=202)

    async def pause(self, request: Request) -> Response:
        return GoJSONResponse(self.m.lifecycle.pause(request.path_params["id"]), status_code=202)

    async def resume(self, request: Request) -> Response:
        return GoJSONResponse(self.m.lifecycle.resume(request.path_params["id"]), status_code=202)

    async def ping(self, request: Request) -> Response:
        self.m.ping(request.path_params["id"])
        return Response(status_code=204)

    async def metrics(self, request: Request) -> Response:
        return GoJSONResponse(
            await self.m.capsule_metrics(
                request.path_params["id"], request.query_params.get("range")
            )
        )

    # exec and processes -------------------------------------------------------
    async def exec(self, request: Request) -> Response:
        capsule_id = request.path_params["id"]
        self.m.require_running(capsule_id)  # a 409 wins over a bad body, as on the platform
        body = await _json_body(request)
        run = asyncio.ensure_future(self.m.exec(capsule_id, body))
        # The body is consumed, so the next ASGI message is the client going away:
        # cancelling the exec then kills the command instead of leaving it running.
        gone = asyncio.ensure_future(request.receive())
        try:
            await asyncio.wait({run, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            abandoned = not run.done()
            if abandoned:
                run.cancel()
            gone.cancel()
            for task in (gone, run) if abandoned else (gone,):
                with contextlib.suppress(asyncio.CancelledError, ApiError):
                    await task
        if abandoned:
            return Response(status_code=499)  # nobody is listening any more
        status, payload = await run
        return GoJSONResponse(payload, status_code=status)

    async def processes(self, request: Request) -> Response:
        return GoJSONResponse(self.m.processes(request.path_params["id"]))

    async def kill(self, request: Request) -> Response:
        p = request.path_params
        await self.m.kill(p["id"], p["selector"], request.query_params.get("signal"))
        return Response(status_code=204)

    # files --------------------------------------------------------------------
    def _fs(self, request: Request) -> CapsuleFiles:
        return self.m.files(request.path_params["id"])

    async def _form(self, request: Request, limit: int | None) -> Any:
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise bad_request("expected multipart/form-data")
        if limit is not None:
            declared = request.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise ApiError(413, "too_large", "file exceeds 100 MB limit")
            seen = 0
            upstream = request.receive

            async def counted() -> Message:
                nonlocal seen
                msg = await upstream()
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise _TooLarge
                return msg

            request = Request(request.scope, counted)
        try:
            return await request.form(max_files=4, max_fields=16)
        except _TooLarge:
            raise ApiError(413, "too_large", "file exceeds 100 MB limit") from None
        except (MultiPartException, HTTPException) as exc:
            raise bad_request(
                f"invalid multipart body: {getattr(exc, 'detail', None) or getattr(exc, 'message', exc)}"
            ) from None

    @staticmethod
    def _parts(form: Any) -> tuple[str, UploadFile]:
        path = form.get("path")
        upload = form.get("file")
        if not isinstance(path, str) or not path:
            raise bad_request("path is required")
        if not isinstance(upload, UploadFile):
            raise bad_request("file is required")
        return path, upload

    async def files_write(self, request: Request) -> Response:
        fs = self._fs(request)
        form = await self._form(request, MAX_WRITE_BYTES)
        try:
            path, upload = self._parts(form)
            self._disk_full(request, "write", path)
            data = await upload.read()
            await _fs_call(fs.write_bytes, path, data)
        finally:
            await form.close()
        return Response(status_code=204)

    async def files_stream_write(self, request: Request) -> Response:
        fs = self._fs(request)
        form = await self._form(request, None)
        try:
            path, upload = self._parts(form)
            self._disk_full(request, "write", path)
            writer = await _fs_call(fs.writer, path)
            try:
                while chunk := await upload.read(1 << 20):
                    await _fs_call(writer.write, chunk)
                await _fs_call(writer.commit)
            finally:
                # In a thread: a guest's abort is a request to its agent.  If this
                # await is cancelled the thread still finishes the cleanup.
                await asyncio.to_thread(writer.abort)
        finally:
            await form.close()
        return Response(status_code=204)

    async def files_read(self, request: Request) -> Response:
        fs = self._fs(request)
        path = _path_field(await _json_body(request))
        data = await _fs_call(fs.read_bytes, path)
        return Response(data, media_type="application/octet-stream")

    async def files_stream_read(self, request: Request) -> Response:
        fs = self._fs(request)
        path = _path_field(await _json_body(request))
        reader = await _fs_call(fs.open_read, path)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while chunk := await asyncio.to_thread(reader.read, READ_CHUNK):
                    yield chunk
            finally:
                reader.close()

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    async def files_list(self, request: Request) -> Response:
        fs = self._fs(request)
        body = await _json_body(request)
        path = _path_field(body)
        # Any depth is accepted (the walk stops at 64 levels), but it must be a sane int.
        depth = _validate.integer(body, "depth", 0, 0, _validate.INT64_MAX)
        return GoJSONResponse({"entries": await _fs_call(fs.list_dir, path, depth)})

    async def files_mkdir(self, request: Request) -> Response:
        fs = self._fs(request)
        path = _path_field(await _json_body(request))
        self._disk_full(request, "mkdir", path)
        try:
            entry = await _fs_call(fs.mkdir, path)
        except ApiError as exc:
            if exc.status == 409:  # API 0.2.2 names this conflict's code
                raise ApiError(409, "already_exists", exc.message) from None
            raise
        return GoJSONResponse({"entry": entry})

    async def files_remove(self, request: Request) -> Response:
        fs = self._fs(request)
        path = _path_field(await _json_body(request))
        await _fs_call(fs.remove, path)
        return Response(status_code=204)

    # snapshots ----------------------------------------------------------------
    async def snapshot_create(self, request: Request) -> Response:
        body = await _json_body(request)
        overwrite = request.query_params.get("overwrite", "").lower() in ("1", "true")
        return GoJSONResponse(self.m.lifecycle.snapshot(body, overwrite), status_code=202)

    async def snapshot_list(self, request: Request) -> Response:
        return GoJSONResponse(self.m.templates(request.query_params.get("type")))

    async def snapshot_delete(self, request: Request) -> Response:
        await self.m.delete_template(request.path_params["name"])
        return Response(status_code=204)


_CAPS = "/v1/capsules/{id}"
# (path, method, Api method): every REST route; the WebSockets follow.
HTTP_ROUTES = [
    ("/health", "GET", "health"),
    ("/v1/events/stream", "GET", "events"),
    ("/v1/capsules", "POST", "create"),
    ("/v1/capsules", "GET", "list_capsules"),
    ("/v1/capsules/stats", "GET", "stats"),
    ("/v1/capsules/usage", "GET", "usage"),
    (_CAPS, "GET", "get"),
    (_CAPS, "DELETE", "destroy"),
    (_CAPS + "/exec", "POST", "exec"),
    (_CAPS + "/ping", "POST", "ping"),
    (_CAPS + "/pause", "POST", "pause"),
    (_CAPS + "/resume", "POST", "resume"),
    (_CAPS + "/metrics", "GET", "metrics"),
    (_CAPS + "/processes", "GET", "processes"),
    (_CAPS + "/processes/{selector}", "DELETE", "kill"),
    (_CAPS + "/files/write", "POST", "files_write"),
    (_CAPS + "/files/read", "POST", "files_read"),
    (_CAPS + "/files/stream/write", "POST", "files_stream_write"),
    (_CAPS + "/files/stream/read", "POST", "files_stream_read"),
    (_CAPS + "/files/list", "POST", "files_list"),
    (_CAPS + "/files/mkdir", "POST", "files_mkdir"),
    (_CAPS + "/files/remove", "POST", "files_remove"),
    ("/v1/snapshots", "POST", "snapshot_create"),
    ("/v1/snapshots", "GET", "snapshot_list"),
    ("/v1/snapshots/{name}", "DELETE", "snapshot_delete"),
]
WS_ROUTES = [
    (_CAPS + "/exec/stream", _ws.exec_stream),
    (_CAPS + "/pty", _ws.pty),
    (_CAPS + "/processes/{selector}/stream", _ws.process_stream),
]
# Every route path (templates included) and the methods it answers (a WebSocket: GET).
ROUTES: dict[str, frozenset[str]] = {
    path: frozenset(m for p, m, _ in HTTP_ROUTES if p == path)
    for path in dict.fromkeys(p for p, _, _ in HTTP_ROUTES)
}
ROUTES.update({path: frozenset({"GET"}) for path, _ in WS_ROUTES})


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _not_found(request: Request, exc: Exception) -> Response:
    # chi's text answer for an unknown route.
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        return Response(status_code=405)
    return PlainTextResponse("404 page not found\n", status_code=404)


def create_app(
    manager_factory: Callable[[], Manager],
    api_key: str,
    *,
    sse_keepalive: float = 15.0,
    pty_ping_interval: float = 30.0,
    ws_start_timeout: float = _ws.START_TIMEOUT,
    on_ready: Callable[[Manager], None] | None = None,
    faults: Faults | None = None,
    transport_of: TransportOf | None = None,
) -> Starlette:
    holder: dict[str, Api] = {}

    def bound(name: str) -> Handler:
        async def call(request: Request) -> Response:
            try:
                return await getattr(holder["api"], name)(request)  # type: ignore[no-any-return]
            except ClientDisconnect:
                # The client went away mid-body (or the body deadline cut it off): no
                # one is left to answer, and it is not a server error worth a traceback.
                log.debug("%s %s: the client disconnected", request.method, request.url.path)
                return Response(status_code=400)

        call.__name__ = name
        return call

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        manager = manager_factory()
        try:
            await manager.start()
        except BaseException:
            await manager.stop()
            raise
        holder["api"] = Api(manager, sse_keepalive, faults)
        app.state.ws = _ws.WSSettings(manager, api_key, pty_ping_interval, ws_start_timeout)
        app.state.manager = manager
        if on_ready is not None:
            on_ready(manager)
        try:
            yield
        finally:
            await manager.stop()

    routes: list[BaseRoute] = [Route(p, bound(name), methods=[m]) for p, m, name in HTTP_ROUTES]
    routes += [WebSocketRoute(p, handler) for p, handler in WS_ROUTES]
    return Starlette(
        routes=routes,
        middleware=[
            # First: capsule-port hosts never reach the API (nor its key check).
            Middleware(
                _proxy.HostRouting, proxy=_proxy.create_proxy_app(lambda: holder["api"].m, api_key)
            ),
            Middleware(ApiKeyMiddleware, api_key=api_key),
            # After the key check: an unauthenticated request never fires a fault.
            *(
                [Middleware(FaultMiddleware, faults, routes, api_key, transport_of)]
                if faults is not None and transport_of is not None
                else []
            ),
        ],
        exception_handlers={ApiError: _api_error, 404: _not_found, 405: _not_found},
        lifespan=lifespan,
    )


__all__ = ["ROUTES", "create_app"]
