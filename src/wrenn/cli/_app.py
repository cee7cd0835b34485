"""The root command, shared state, global options, and the mapping of errors to exit codes."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from .._exceptions import (
    WrennAgentError,
    WrennAuthenticationError,
    WrennCapsuleStateError,
    WrennCommandTimeoutError,
    WrennConflictError,
    WrennConnectionError,
    WrennError,
    WrennForbiddenError,
    WrennNotFoundError,
    WrennTimeoutError,
    WrennUsageError,
)

F = TypeVar("F", bound=Callable[..., Any])

# Exit codes, one per class of error (documented in `wrenn --help` and the README).
EXIT_OK = 0
EXIT_ERROR = 1  # any other API or SDK error
EXIT_USAGE = 2  # bad command line or argument
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4  # 409, or a capsule in a state that forbids the call
EXIT_AUTH = 5  # no API key, a key refused (401) or a forbidden call (403)
EXIT_TIMEOUT = 6
EXIT_CONNECTION = 7  # the server could not be reached
EXIT_INTERRUPTED = 130  # Ctrl-C

EXIT_CODES_HELP = """\b
Exit codes:
  0    success (`wrenn exec`: the command's own exit code)
  1    any other API error
  2    usage error (bad option or argument)
  3    not found
  4    conflict (409, or the capsule is in the wrong state)
  5    authentication: no API key, key refused, or forbidden
  6    timeout
  7    the server could not be reached
  130  interrupted (Ctrl-C)"""

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class State:
    """What every command shares: connection settings, output mode, and one client."""

    def __init__(self) -> None:
        self.api_key: str | None = None
        self.base_url: str | None = None
        self.json = False
        self.debug = False
        self._client: Any = None

    def client(self) -> Any:
        """The blocking ``WrennClient``, made on first use and closed when the command ends."""
        if self._client is None:
            from .._sync.client import WrennClient

            self._client = WrennClient(api_key=self.api_key, base_url=self.base_url)
            ctx = click.get_current_context(silent=True)
            if ctx is not None:
                ctx.find_root().call_on_close(self._client.close)
        return self._client

    def capsule(self, capsule_id: str) -> Any:
        """A blocking ``Capsule`` attached to ``capsule_id`` (resumed if paused), closed at the end."""
        from .._sync.capsule import Capsule

        capsule = Capsule.connect(capsule_id, api_key=self.api_key, base_url=self.base_url)
        ctx = click.get_current_context(silent=True)
        if ctx is not None:
            ctx.find_root().call_on_close(capsule.close)
        return capsule


pass_state = click.make_pass_decorator(State, ensure=True)


def _set_flag(name: str) -> Callable[[click.Context, click.Parameter, bool], None]:
    def callback(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value:
            setattr(ctx.ensure_object(State), name, True)

    return callback


def output_options(func: F) -> F:
    """``--json`` and ``--debug`` on a leaf command too (``wrenn capsules list --json``)."""
    func = click.option(
        "--json",
        "json_output",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set_flag("json"),
        help="Print JSON for scripts instead of tables.",
    )(func)
    func = click.option(
        "--debug",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set_flag("debug"),
        help="Show the full traceback of an error.",
    )(func)
    return func


def exit_code_of(exc: BaseException) -> tuple[int, str]:
    """The exit code and the label of the one-line message for an error."""
    if isinstance(exc, WrennNotFoundError) or (
        isinstance(exc, WrennAgentError) and "no such file or directory" in str(exc).lower()
    ):
        return EXIT_NOT_FOUND, "not found"
    if isinstance(exc, (WrennConflictError, WrennCapsuleStateError)):
        return EXIT_CONFLICT, "conflict"
    if isinstance(exc, (WrennAuthenticationError, WrennForbiddenError)):
        return EXIT_AUTH, "authentication"
    # A command timeout is not a WrennTimeoutError (it is no transport failure), but
    # to a script it is a timeout all the same.
    if isinstance(exc, (WrennTimeoutError, WrennCommandTimeoutError)):
        return EXIT_TIMEOUT, "timeout"
    if isinstance(exc, WrennConnectionError):
        return EXIT_CONNECTION, "connection"
    if isinstance(exc, WrennUsageError):
        return EXIT_USAGE, "usage"
    if isinstance(exc, WrennError):
        return EXIT_ERROR, "error"
    if isinstance(exc, ValueError) and "API key" in str(exc):
        return EXIT_AUTH, "authentication"
    if isinstance(exc, (ValueError, TypeError)):
        return EXIT_USAGE, "usage"
    return EXIT_ERROR, "error"


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "(no message)"


def report(exc: BaseException) -> int:
    """Print an error as one line on stderr and return its exit code."""
    code, label = exit_code_of(exc)
    message = str(exc)
    if not isinstance(exc, (WrennError, OSError, ValueError, TypeError)):
        message = f"{type(exc).__name__}: {message}"  # unexpected: say what it was
    if isinstance(exc, WrennError) and exc.status_code is not None:
        message = f"{message} (HTTP {exc.status_code})"
    if isinstance(exc, OSError) and not isinstance(exc, WrennError) and exc.strerror:
        message = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    click.echo(f"wrenn: {label}: {_one_line(message)}", err=True)
    return code


def run(command: click.Command, argv: Sequence[str] | None, prog_name: str) -> int:
    """Run the command tree; every error becomes one line on stderr and an exit code."""
    state = State()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        try:
            result = command.main(args, prog_name=prog_name, obj=state, standalone_mode=False)
        except click.exceptions.Exit as exc:
            return int(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            return int(exc.exit_code)
        except (click.Abort, KeyboardInterrupt):
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            # The reader went away (`wrenn ... | head`): quietly, as other tools do.
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_ERROR
        except Exception as exc:
            if state.debug:
                raise
            return report(exc)
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
    return int(result) if isinstance(result, int) else EXIT_OK
