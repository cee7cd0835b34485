"""The only place where the synchronous and asynchronous code paths differ.

Code under ``_async/`` never calls anyio or asyncio directly: every primitive that
behaves differently in the two worlds is imported from here under an ``Async*`` or
``a*`` name, and ``build_sync.py`` maps that name to its twin defined beside it.
Both forms are written by hand and kept side by side so a reader can compare them.
"""

from __future__ import annotations

import contextvars
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Final

import anyio
import anyio.abc

from ._exceptions import BlockingCallWarning as BlockingCallWarning

# --- sleeping -------------------------------------------------------------------


async def asleep(seconds: float) -> None:
    """Sleep without blocking the event loop (asyncio and trio alike)."""
    await anyio.sleep(seconds)


def sleep(seconds: float) -> None:
    """Sleep the calling thread."""
    time.sleep(seconds)


# --- mutual exclusion --------------------------------------------------------------


class AsyncLock:
    """A task lock, created lazily so it binds to whichever event loop first uses it."""

    def __init__(self) -> None:
        self._lock: anyio.Lock | None = None

    async def __aenter__(self) -> None:
        if self._lock is None:
            self._lock = anyio.Lock()
        await self._lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        assert self._lock is not None
        self._lock.release()


class Lock:
    """A thread lock with the same interface as ``AsyncLock``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


# --- bounding concurrency ----------------------------------------------------------


class AsyncSemaphore:
    """A task semaphore with a bounded wait, created lazily on the loop that first uses it."""

    def __init__(self, value: int) -> None:
        self._value = value
        self._semaphore: anyio.Semaphore | None = None
        # Slots given back so far: a waiter that saw this move knows the pool moves.
        self.releases = 0

    async def acquire(self, timeout: float | None) -> bool:
        """Take a slot; False if none became free within ``timeout`` seconds."""
        if self._semaphore is None:
            self._semaphore = anyio.Semaphore(self._value)
        try:
            self._semaphore.acquire_nowait()
            return True
        except anyio.WouldBlock:
            pass
        with anyio.move_on_after(timeout):
            await self._semaphore.acquire()
            return True
        return False

    def release(self) -> None:
        assert self._semaphore is not None
        self.releases += 1
        self._semaphore.release()


class Semaphore:
    """The thread twin of ``AsyncSemaphore``."""

    def __init__(self, value: int) -> None:
        self._semaphore = threading.Semaphore(value)
        # Slots given back so far (an unlocked count: it only has to move, not be exact).
        self.releases = 0

    def acquire(self, timeout: float | None) -> bool:
        # The non-blocking attempt skips the condition variable when a slot is free.
        return self._semaphore.acquire(blocking=False) or self._semaphore.acquire(timeout=timeout)

    def release(self) -> None:
        self.releases += 1
        self._semaphore.release()


# --- waking a waiter early ----------------------------------------------------------


class AsyncNotice:
    """A wake-up call one task waits for, with a timeout, and any other task gives.

    A notice given while nobody waits is kept for the next wait, so none is lost between
    a waiter's checks. Each wait consumes it.
    """

    def __init__(self) -> None:
        self._given = False
        self._event: anyio.Event | None = None

    def give(self) -> None:
        self._given = True
        if self._event is not None:
            self._event.set()

    async def wait(self, timeout: float) -> bool:
        """Wait until the notice is given or ``timeout`` seconds pass; True if given."""
        if not self._given:
            self._event = anyio.Event()
            with anyio.move_on_after(timeout):
                await self._event.wait()
            self._event = None
        given, self._given = self._given, False
        return given


class Notice:
    """The thread twin of ``AsyncNotice``."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def give(self) -> None:
        self._event.set()

    def wait(self, timeout: float) -> bool:
        given = self._event.wait(timeout)
        self._event.clear()
        return given


# --- work beside the caller -----------------------------------------------------------


class AsyncBackground:
    """Runs ``target`` beside the block (in a task group) and ends it when the block ends.

    The target must handle its own errors: it is cancelled on exit, and anything it
    raises would surface from the block. ``stop`` is for the thread twin only; a task
    is ended by cancellation, which needs no help.
    """

    def __init__(
        self, target: Callable[[], Coroutine[Any, Any, None]], stop: Callable[[], None]
    ) -> None:
        self._target = target
        self._group: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> None:
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._group.start_soon(self._target)

    async def __aexit__(self, *exc: Any) -> None:
        assert self._group is not None
        self._group.cancel_scope.cancel()
        # The block's own exception is not handed to the group, which would wrap it in
        # an exception group: it propagates from here as it was raised.
        await self._group.__aexit__(None, None, None)


class Background:
    """The thread twin: ``target`` runs on a daemon thread; on exit ``stop`` is called
    (it must make a blocked ``target`` return, e.g. by shutting its socket down) and the
    thread is joined, for a bounded time."""

    JOIN_TIMEOUT = 5.0

    def __init__(self, target: Callable[[], None], stop: Callable[[], None]) -> None:
        self._target = target
        self._stop = stop
        self._thread: threading.Thread | None = None

    def __enter__(self) -> None:
        self._thread = threading.Thread(target=self._target, name="wrenn-background", daemon=True)
        self._thread.start()

    def __exit__(self, *exc: Any) -> None:
        assert self._thread is not None
        self._stop()
        self._thread.join(self.JOIN_TIMEOUT)


# --- which event loop is running ---------------------------------------------------


def _running_loop() -> object | None:
    """Return the running asyncio loop or trio run token, or None outside of one."""
    import asyncio

    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            return trio.lowlevel.current_trio_token()  # type: ignore[no-any-return]
        except RuntimeError:
            pass
    return None


class AsyncLoopGuard:
    """Remembers the event loop an async client was first used on and refuses any other.

    An httpx connection pool holds sockets bound to the loop that opened them; using it
    from a second loop fails deep inside asyncio ("Event loop is closed"). Failing early
    with a clear message is the documented rule: one async client per event loop.
    """

    def __init__(self) -> None:
        self._loop: weakref.ref[object] | None = None

    def check(self) -> bool:
        """Return True if this is the loop of first use (binding it now if unbound)."""
        loop = _running_loop()
        if loop is None:
            return True
        if self._loop is None:
            self._loop = weakref.ref(loop)
            return True
        return self._loop() is loop


class LoopGuard:
    """The sync twin: a blocking client is not tied to any event loop."""

    def check(self) -> bool:
        return True


# --- cleanup that must finish even while being cancelled ---------------------------


class AsyncCleanupScope:
    """Shield a short cleanup (sending a WebSocket close frame, killing a timed-out
    process) from cancellation, with a deadline so it can never hang.

    Under trio, and under anyio cancel scopes, every await inside an already cancelled
    scope raises at once; without the shield a cancelled stream could not say goodbye.
    """

    def __init__(self, seconds: float) -> None:
        self._scope = anyio.CancelScope(shield=True)
        self._seconds = seconds

    def __enter__(self) -> None:
        self._scope.deadline = anyio.current_time() + self._seconds
        self._scope.__enter__()

    def __exit__(self, *exc: object) -> bool:
        return bool(self._scope.__exit__(*exc))  # type: ignore[arg-type]


class CleanupScope:
    """The sync twin: threads are not cancelled, so there is nothing to shield."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# --- the wall-clock bound of one HTTP attempt ----------------------------------------

# The monotonic time by which the current thread's HTTP attempt must end, or None.
# Read by the blocking client's network streams (``_netbackend.sockets``), which shorten every
# socket wait to fit it: threads cannot be cancelled, so the bound is enforced where
# they block.
ATTEMPT_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "wrenn_attempt_deadline", default=None
)


class AsyncAttemptTimer:
    """Bounds the wall clock of the block (one HTTP attempt) to ``seconds``, or not at all
    when ``seconds`` is None.

    httpx's timeouts apply to each socket operation, so a server that drips one byte
    every half second never trips them; a cancel scope ends the whole attempt. When it
    fires the block's cancellation is swallowed and ``expired`` is True: the caller
    raises its own timeout error. A cancellation from outside propagates untouched.
    """

    def __init__(self, seconds: float | None) -> None:
        # No scope at all without a bound: entering one costs on every call.
        self._scope = None if seconds is None else anyio.move_on_after(seconds)

    def __enter__(self) -> None:
        if self._scope is not None:
            self._scope.__enter__()

    def __exit__(self, *exc: Any) -> bool:
        return self._scope is not None and bool(self._scope.__exit__(*exc))

    @property
    def expired(self) -> bool:
        return self._scope is not None and self._scope.cancelled_caught


class SyncAttemptTimer:
    """The thread twin of ``AsyncAttemptTimer``: publishes the deadline in
    ``ATTEMPT_DEADLINE`` for the socket waits of this thread's attempt, which then fail
    with a timeout once it has passed (nothing is swallowed here)."""

    def __init__(self, seconds: float | None) -> None:
        self._seconds = seconds
        self._deadline: float | None = None
        self._token: contextvars.Token[float | None] | None = None

    def __enter__(self) -> None:
        if self._seconds is not None:
            self._deadline = time.monotonic() + self._seconds
            self._token = ATTEMPT_DEADLINE.set(self._deadline)

    def __exit__(self, *exc: Any) -> None:
        if self._token is not None:
            ATTEMPT_DEADLINE.reset(self._token)
            self._token = None

    @property
    def expired(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline


# --- which flavour of the API a module belongs to -----------------------------------


# The few places that must behave differently say so with ``if IS_ASYNC:`` (an
# optional ``else:`` holds the blocking side) or ``if not IS_ASYNC:``. ``build_sync.py``
# resolves those branches when it generates the sync twin, which therefore carries no
# async-only code and never imports this name; mypy treats it as always true
# (``always_true`` in pyproject.toml), so it checks only the async side here.
IS_ASYNC: Final = True


# --- blocking calls from inside an event loop ---------------------------------------


def allow_in_event_loop(method: str, path: str) -> None:
    """The async side: awaiting inside an event loop is the point."""


def warn_if_event_loop_running(method: str, path: str) -> None:
    """The sync twin: a blocking call inside a running asyncio or trio loop stalls every
    other task of that loop, so say so and name the async spelling."""
    asyncio = sys.modules.get("asyncio")
    running = asyncio is not None and asyncio._get_running_loop() is not None
    trio = sys.modules.get("trio")
    if not running and trio is not None:
        try:
            trio.lowlevel.current_trio_token()
            running = True
        except RuntimeError:
            pass
    if running:
        warnings.warn(
            f"blocking wrenn call ({method} {path}) inside a running event loop stalls the loop; "
            "use AsyncWrennClient / AsyncCapsule and `await` it instead",
            BlockingCallWarning,
            stacklevel=4,
        )
