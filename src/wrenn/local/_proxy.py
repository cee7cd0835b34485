"""The capsule port proxy: requests whose Host is ``{port}-{capsule_id}.{domain}``.

On the platform such a host reaches a port inside the capsule. wrenn.local
serves the one port the SDK needs, the code runner's Jupyter API on 8888, with a
kernel started inside the capsule (see ``_kernels``): ``GET/POST /api/kernels``,
``GET/DELETE /api/kernels/{id}``, ``POST /api/kernels/{id}/interrupt``, the
``/api/kernels/{id}/channels`` WebSocket, ``GET /api/status`` and
``GET /api/kernelspecs``. Other ports answer 404 with the reason.

The platform's proxy takes no credentials; here any local user could reach a
capsule's kernel (ids are easy to learn), so every request must carry the
capsule's proxy token (``X-Wrenn-Proxy-Token``: HMAC-SHA256 of the capsule id
under the API key, see ``_auth.proxy_token``), which the SDK's code runner
sends. The token opens only that capsule's ports and does not reveal the key,
so it is harmless if it reaches the capsule. A request that carries the team
API key itself is refused (403): a key sent to a capsule URL would reach code
the team does not control on the platform, and the SDK must never send one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from . import _kernels
from ._auth import check_proxy_token
from ._capsules import Manager
from ._live import Live
from ._wire import CAPSULE_ID_RE, ApiError

log = logging.getLogger("wrenn.local")

# "8888-cl-abc.127.0.0.1:5000" -> ("8888", "cl-abc"); the rest is the proxy domain.
_PROXY_HOST = re.compile(r"^(\d{1,5})-([a-z0-9-]+)\.", re.IGNORECASE)
_STARTED = time.time()
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def proxy_target(scope: Scope) -> tuple[int, str] | None:
    """(port, capsule id) when the request's Host names a capsule port, else None."""
    for name, value in scope.get("headers", ()):
        if name == b"host":
            match = _PROXY_HOST.match(value.decode("latin-1"))
            if match is None:
                return None
            return int(match.group(1)), match.group(2).lower()
    return None


class HostRouting:
    """Send capsule-port hosts to the proxy app and everything else to the API."""

    def __init__(self, app: ASGIApp, proxy: ASGIApp) -> None:
        self.app = app
        self.proxy = proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and proxy_target(scope) is not None:
            await self.proxy(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _jupyter_error(status: int, message: str) -> JSONResponse:
    # Jupyter server's error body shape.
    return JSONResponse({"message": message, "reason": None}, status_code=status)


def _carries_credentials(headers: Any) -> bool:
    return bool(headers.get("x-api-key")) or headers.get("authorization", "").lower().startswith(
        "bearer "
    )


class KernelProxy:
    def __init__(self, manager: Callable[[], Manager], api_key: str) -> None:
        self._manager = manager
        self._api_key = api_key

    def _live(self, scope: Scope, headers: Any) -> Live:
        """The running code-runner capsule this request is for, or an ApiError."""
        target = proxy_target(scope)
        assert target is not None
        port, capsule_id = target
        if _carries_credentials(headers):
            log.warning("refused a request carrying an API key to capsule %s", capsule_id)
            raise ApiError(
                403, "forbidden", "refusing credentials sent to a capsule URL: never send the key"
            )
        if not CAPSULE_ID_RE.match(capsule_id):
            raise ApiError(404, "not_found", "sandbox not found")
        # Before any lookup, so that nobody without the token learns which capsules exist.
        if not check_proxy_token(headers, self._api_key, capsule_id):
            raise ApiError(401, "unauthorized", "X-Wrenn-Proxy-Token for this capsule is required")
        manager = self._manager()
        row = manager.get_row(capsule_id)
        _, live = manager.require_running(capsule_id)
        if port != _kernels.PORT or row.template != _kernels.TEMPLATE:
            # 404, not the platform's 502 for a port nobody listens on: the SDK
            # retries a 502 while a Jupyter server boots, and this never will.
            raise ApiError(
                404,
                "not_found",
                f"wrenn.local proxies only port {_kernels.PORT} of {_kernels.TEMPLATE!r} "
                f"capsules (the code runner); nothing serves port {port} of this capsule",
            )
        manager.touch(capsule_id)
        return live

    async def _call(self, request: Request, handler: Callable[..., Any]) -> Response:
        try:
            live = self._live(request.scope, request.headers)
            return await handler(request, live)  # type: ignore[no-any-return]
        except ApiError as exc:
            return exc.response()

    # REST ------------------------------------------------------------------------
    async def status(self, request: Request) -> Response:
        async def handle(request: Request, live: Live) -> Response:
            return JSONResponse(
                {
                    "started": _kernels.jupyter_time(_STARTED),
                    "last_activity": _kernels.jupyter_time(time.time()),
                    "connections": sum(k.connections for k in live.kernels.values()),
                    "kernels": len(live.kernels),
                }
            )

        return await self._call(request, handle)

    async def kernelspecs(self, request: Request) -> Response:
        async def handle(request: Request, live: Live) -> Response:
            spec = {
                "name": _kernels.KERNEL_NAME,
                "spec": {"display_name": "Python 3 (wrenn)", "language": "python", "argv": []},
                "resources": {},
            }
            return JSONResponse(
                {"default": _kernels.KERNEL_NAME, "kernelspecs": {_kernels.KERNEL_NAME: spec}}
            )

        return await self._call(request, handle)

    async def list_kernels(self, request: Request) -> Response:
        async def handle(request: Request, live: Live) -> Response:
            return JSONResponse([k.model() for k in live.kernels.values()])

        return await self._call(request, handle)

    async def start_kernel(self, request: Request) -> Response:
        async def handle(request: Request, live: Live) -> Response:
            try:
                body = json.loads(await request.body() or b"{}")
            except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
                return _jupyter_error(400, "invalid JSON body")
            name = body.get("name", _kernels.KERNEL_NAME) if isinstance(body, dict) else None
            if name not in (_kernels.KERNEL_NAME, "python3"):
                return _jupyter_error(404, f"No such kernel named {name!r}")
            if _kernels.missing_packages():
                return _jupyter_error(501, _kernels.install_hint())
            async with live.kernel_start:
                try:
                    kernel = await _kernels.start_kernel(live.sandbox, name)
                except _kernels.KernelStartError as exc:
                    log.error("kernel start failed in %s: %s", live.sandbox.capsule_id, exc)
                    return _jupyter_error(500, str(exc))
            if self._manager().live.get(live.sandbox.capsule_id) is not live:
                await kernel.shutdown()
                return _jupyter_error(500, "the capsule stopped while the kernel started")
            live.kernels[kernel.id] = kernel

            def forget(kind: str, _data: bytes) -> None:
                if kind == "exit" and live.kernels.get(kernel.id) is kernel:
                    del live.kernels[kernel.id]
                    kernel.close_fds()

            kernel.proc.listen(forget)
            return JSONResponse(kernel.model(), status_code=201)

        return await self._call(request, handle)

    async def get_kernel(self, request: Request) -> Response:
        async def handle(request: Request, live: Live) -> Response:
            kernel = live.kernels.get(request.path_params["kernel_id"])
            if kernel is None:
                return _jupyter_error(404, "Kernel does not exist")
            return JSONResponse(kernel.model())

        return await self._call(request, handle)

    async def delete_kernel(self, request: Request) -> Response:
        async def handle(request: Request, live: Live) -> Response:
            kernel = live.kernels.pop(request.path_params["kernel_id"], None)
            if kernel is None:
                return _jupyter_error(404, "Kernel does not exist")
            await kernel.shutdown()
            return Response(status_code=204)

        return await self._call(request, handle)

    async def interrupt_kernel(self, request: Request) -> Response:
        async def handle(request: Request, live: Live) -> Response:
            kernel = live.kernels.get(request.path_params["kernel_id"])
            if kernel is None:
                return _jupyter_error(404, "Kernel does not exist")
            await kernel.interrupt()
            return Response(status_code=204)

        return await self._call(request, handle)

    async def other(self, request: Request) -> Response:
        """Any other path: the capsule's error first (wrong port, missing, paused), else 404."""

        async def handle(request: Request, live: Live) -> Response:
            return _jupyter_error(404, "Not Found")

        return await self._call(request, handle)

    # WebSocket -------------------------------------------------------------------
    async def channels(self, ws: WebSocket) -> None:
        try:
            live = self._live(ws.scope, ws.headers)
            kernel = live.kernels.get(ws.path_params["kernel_id"])
            if kernel is None:
                raise ApiError(404, "not_found", "Kernel does not exist")
        except ApiError as exc:
            await ws.send_denial_response(_jupyter_error(exc.status, exc.message))
            return
        try:
            channels = _kernels.KernelChannels(kernel, ("shell", "control", "iopub"))
        except Exception as exc:
            await ws.send_denial_response(_jupyter_error(500, f"kernel unreachable: {exc}"))
            return
        kernel.connections += 1
        try:
            if not await channels.subscribed(_kernels.SUBSCRIBE_TIMEOUT):
                log.warning("kernel %s: iopub did not confirm its subscription", kernel.id)
            await ws.accept()
            await _bridge(ws, kernel, channels)
        finally:
            kernel.connections -= 1
            channels.close()


async def _bridge(
    ws: WebSocket, kernel: _kernels.Kernel, channels: _kernels.KernelChannels
) -> None:
    """Relay client messages to the kernel and kernel messages to the client."""

    async def from_client() -> None:
        while True:
            try:
                raw = await ws.receive_text()
            except (WebSocketDisconnect, KeyError, RuntimeError):
                return
            try:
                message = json.loads(raw)
                channel = message.pop("channel")
                if not isinstance(message.get("header"), dict) or "msg_id" not in message["header"]:
                    raise ValueError("a kernel message needs a header with a msg_id")
                for key in ("parent_header", "metadata", "content"):
                    message.setdefault(key, {})
                channels.send(channel, message)
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
                log.warning("dropped an invalid kernel message from a client")
                continue
            kernel.last_activity = time.time()

    async def to_client() -> None:
        while True:
            channel, message = await channels.receive_any()
            if channel == "iopub" and message.get("msg_type") == "status":
                state = message.get("content", {}).get("execution_state")
                if isinstance(state, str):
                    kernel.execution_state = state
            kernel.last_activity = time.time()
            await ws.send_text(_kernels.to_json(channel, message))

    tasks = [
        asyncio.create_task(from_client()),
        asyncio.create_task(to_client()),
        asyncio.create_task(kernel.proc.exited.wait()),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.warning("kernel bridge ended: %r", task.exception())
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(Exception):
            await ws.close(code=1011 if kernel.proc.exited.is_set() else 1000)


def create_proxy_app(manager: Callable[[], Manager], api_key: str) -> Starlette:
    proxy = KernelProxy(manager, api_key)
    kernel = "/api/kernels/{kernel_id}"
    return Starlette(
        routes=[
            Route("/api/status", proxy.status, methods=["GET"]),
            Route("/api/kernelspecs", proxy.kernelspecs, methods=["GET"]),
            Route("/api/kernels", proxy.list_kernels, methods=["GET"]),
            Route("/api/kernels", proxy.start_kernel, methods=["POST"]),
            Route(kernel, proxy.get_kernel, methods=["GET"]),
            Route(kernel, proxy.delete_kernel, methods=["DELETE"]),
            Route(kernel + "/interrupt", proxy.interrupt_kernel, methods=["POST"]),
            WebSocketRoute(kernel + "/channels", proxy.channels),
            Route("/{path:path}", proxy.other, methods=_ALL_METHODS),
        ]
    )
