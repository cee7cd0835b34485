"""``LocalServer``: the embedded server on its own thread and asyncio loop.

Running on a private thread makes it usable from plain sync code and from
inside asyncio or trio programs alike: callers only ever talk to it over a
loopback socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import math
import os
import socket
import sys
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import uvicorn

from . import _fdtree
from ._app import create_app
from ._capsules import Manager
from ._faults import Faults
from ._http import HeadDeadlineH11Protocol, connection_transport
from ._runtime import Backend, choose_backend
from ._runtime._disk import DEFAULT_DISK_SIZE_MB, MAX_DISK_SIZE_MB, MIN_DISK_SIZE_MB
from ._wire import new_api_key

if TYPE_CHECKING:
    import wrenn

log = logging.getLogger("wrenn.local")

PR_SET_CHILD_SUBREAPER = 36
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


def _become_subreaper() -> None:
    """Orphaned sandbox inits are re-parented to us, so we can reap them."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


class LocalServer:
    """An embedded Wrenn-compatible server whose capsules are local sandboxes.

    >>> with LocalServer() as srv:
    ...     client = srv.client()
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str] | None = None,
        port: int = 0,
        isolation: str = "auto",
        api_key: str | None = None,
        host: str = "127.0.0.1",
        *,
        sse_keepalive: float = 15.0,
        pty_ping_interval: float = 30.0,
        metrics_interval: float = 5.0,
        ttl_interval: float = 2.0,
        min_timeout_sec: int = 60,
        freezer: str = "auto",
        transition_delay: float = 0.0,
        ws_start_timeout: float = 10.0,
        disk_size_mb: int = DEFAULT_DISK_SIZE_MB,
    ) -> None:
        if not (math.isfinite(transition_delay) and transition_delay >= 0):
            raise ValueError(f"transition_delay must be >= 0 seconds, got {transition_delay!r}")
        if isinstance(disk_size_mb, bool) or not isinstance(disk_size_mb, int):
            raise TypeError(f"disk_size_mb must be an int, got {disk_size_mb!r}")
        if not MIN_DISK_SIZE_MB <= disk_size_mb <= MAX_DISK_SIZE_MB:
            raise ValueError(
                f"disk_size_mb must be {MIN_DISK_SIZE_MB}..{MAX_DISK_SIZE_MB}, got {disk_size_mb}"
            )
        self._disk_size_mb = disk_size_mb
        self._requested_state_dir = Path(state_dir) if state_dir is not None else None
        self._port = port
        self._host = host
        self._requested_isolation = isolation
        self._api_key = api_key or new_api_key()
        self._sse_keepalive = sse_keepalive
        self._pty_ping_interval = pty_ping_interval
        self._ws_start_timeout = ws_start_timeout
        self._metrics_interval = metrics_interval
        self._ttl_interval = ttl_interval
        self._min_timeout_sec = min_timeout_sec
        self._freezer = freezer
        self._transition_delay = float(transition_delay)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state_dir: Path | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._backend: Backend | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._manager: Manager | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._bound_port = 0
        # Deterministic fault injection for tests (see Faults); stop() clears it.
        self.faults = Faults()

    # properties ---------------------------------------------------------------
    @property
    def base_url(self) -> str:
        self._require_started()
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._bound_port}"

    @property
    def api_key(self) -> str:
        return self._api_key

    @property
    def isolation(self) -> str:
        self._require_started()
        assert self._backend is not None
        return self._backend.kind

    @property
    def isolation_reason(self) -> str:
        self._require_started()
        assert self._backend is not None
        return self._backend.reason

    @property
    def state_dir(self) -> Path:
        self._require_started()
        assert self._state_dir is not None
        return self._state_dir

    @property
    def port(self) -> int:
        self._require_started()
        return self._bound_port

    def _require_started(self) -> None:
        if self._thread is None:
            raise RuntimeError("LocalServer is not started")

    # clients ------------------------------------------------------------------
    def client(self, **kwargs: Any) -> wrenn.WrennClient:
        import wrenn

        return wrenn.WrennClient(api_key=self.api_key, base_url=self.base_url, **kwargs)

    def async_client(self, **kwargs: Any) -> wrenn.AsyncWrennClient:
        import wrenn

        return wrenn.AsyncWrennClient(api_key=self.api_key, base_url=self.base_url, **kwargs)

    # lifecycle ----------------------------------------------------------------
    def start(self) -> LocalServer:
        if self._thread is not None:
            raise RuntimeError("LocalServer already started")
        self._ready.clear()
        self._error = None
        self._manager = None
        self._loop = None
        if self._requested_state_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="wrenn-local-")
            self._state_dir = Path(self._tmp.name)
        else:
            self._state_dir = self._requested_state_dir.resolve()
            self._state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._backend = choose_backend(
                self._requested_isolation, f"wrenn-local-{os.getpid()}-{id(self):x}", self._freezer
            )
            if not self._backend.capabilities.isolated:
                log.warning(
                    "wrenn.local: capsules are NOT isolated (plain subprocesses): %s",
                    self._backend.reason,
                )
            else:
                log.info("wrenn.local: isolation %s (%s)", self._backend.kind, self._backend.reason)
            _become_subreaper()
            # proto must be IPPROTO_TCP: asyncio only sets TCP_NODELAY on accepted sockets
            # whose proto says TCP, and without it Nagle + delayed ACK add ~40 ms per response.
            family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.bind((self._host, self._port))
                sock.listen(128)
            except OSError:
                sock.close()
                raise
            self._bound_port = sock.getsockname()[1]
            self._sock = sock
            backend = self._backend
            state_dir = self._state_dir

            def make_manager() -> Manager:
                return Manager(
                    state_dir,
                    backend,
                    metrics_interval=self._metrics_interval,
                    ttl_interval=self._ttl_interval,
                    min_timeout_sec=self._min_timeout_sec,
                    disk_size_mb=self._disk_size_mb,
                    transition_delay=self._transition_delay,
                )

            def transport_of(scope: Any) -> asyncio.BaseTransport | None:
                """The transport of the connection a request came on (fault injection)."""
                return None if self._server is None else connection_transport(self._server, scope)

            def on_ready(manager: Manager) -> None:
                manager.lifecycle.faults = self.faults
                self._manager = manager
                self._loop = asyncio.get_running_loop()
                self._ready.set()

            app = create_app(
                make_manager,
                self._api_key,
                sse_keepalive=self._sse_keepalive,
                pty_ping_interval=self._pty_ping_interval,
                ws_start_timeout=self._ws_start_timeout,
                on_ready=on_ready,
                faults=self.faults,
                transport_of=transport_of,
            )
            config = uvicorn.Config(
                app,
                http=HeadDeadlineH11Protocol,
                ws="wsproto",
                lifespan="on",
                log_level="warning",
                log_config=None,  # leave the host application's logging alone
                access_log=False,
                timeout_graceful_shutdown=3,
                ws_ping_interval=None,
                # Bounds against clients that hold connections open (see _http):
                # idle keep-alive sockets are closed after 5 s, a request head is
                # at most 64 KiB (larger answers 400), and a WebSocket that never
                # sends its start frame is closed by the handlers (ws_start_timeout).
                timeout_keep_alive=5,
                h11_max_incomplete_event_size=64 * 1024,
            )
            self._server = uvicorn.Server(config)
            self._thread = threading.Thread(
                target=self._run, name="wrenn-local-server", daemon=True
            )
            self._thread.start()
            deadline = START_TIMEOUT
            if not self._ready.wait(deadline) or self._error is not None:
                error = self._error
                self.stop()
                raise RuntimeError(f"wrenn.local server failed to start: {error!r}") from error
            # Wait until uvicorn accepts connections, not just until our lifespan ran.
            while not self._server.started and self._thread.is_alive():
                self._ready.wait(0.005)
        except BaseException:
            if self._thread is None:
                if self._backend is not None:
                    self._backend.cleanup()
                self._cleanup_dirs()
            raise
        return self

    def _run(self) -> None:
        assert self._server is not None
        try:
            asyncio.run(self._serve(self._server))
        except BaseException as exc:  # surfaced by start()
            self._error = exc
        finally:
            if self._error is None and not self._ready.is_set():
                self._error = RuntimeError("server exited during start-up (see log)")
            self._ready.set()
            with contextlib.suppress(OSError):
                self._sock.close()

    async def _serve(self, server: uvicorn.Server) -> None:
        await server.serve(sockets=[self._sock])
        # A connection whose peer stopped reading can still be flushing after the
        # graceful shutdown; cut it, and let its transport close before asyncio.run()
        # closes the loop (or the socket is left for the garbage collector).
        for connection in list(server.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        for _ in range(3):
            await asyncio.sleep(0)

    def stop(self) -> None:
        thread, server = self._thread, self._server
        if thread is None or server is None:
            self._cleanup_dirs()
            return
        # Faults end with the run: a delay or a held transition in flight ends now.
        self.faults.clear()
        if self._loop is not None and self._manager is not None:
            # End SSE streams now, or uvicorn waits for them during graceful shutdown.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._manager.events.close)
        server.should_exit = True
        thread.join(STOP_TIMEOUT)
        if thread.is_alive():
            server.force_exit = True
            thread.join(5)
        if self._manager is not None:
            # Normally a no-op (lifespan shutdown destroyed every sandbox).
            self._manager.emergency_kill()
        self._thread = None
        self._server = None
        self._cleanup_dirs()

    def _cleanup_dirs(self) -> None:
        if self._tmp is not None:
            tmp, self._tmp = self._tmp, None
            # By fd and iteratively: capsule code can make trees deep enough to
            # overflow a recursive removal (RecursionError out of stop()).
            with contextlib.suppress(OSError):
                _fdtree.remove_tree(tmp.name)
            with contextlib.suppress(OSError):
                tmp.cleanup()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        if self._thread is None:
            return "<LocalServer (stopped)>"
        return f"<LocalServer {self.base_url} isolation={self.isolation}>"
