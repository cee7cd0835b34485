"""``wrenn exec``: run a command in a capsule, its output streamed live, its exit code ours."""

from __future__ import annotations

import contextlib
import shlex
import sys
from typing import Any

import click

from .._constants import CLI_STOP_GRACE
from .._exceptions import WrennNotFoundError, WrennStreamError
from .._process import StreamErrorEvent, StreamExitEvent, StreamStderrEvent, StreamStdoutEvent
from ._app import CONTEXT_SETTINGS, EXIT_INTERRUPTED, State, pass_state


def _parse_env(values: tuple[str, ...]) -> dict[str, str] | None:
    envs: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--env")
        envs[name] = value
    return envs or None


def _write(stream: Any, text: str) -> None:
    stream.write(text)
    stream.flush()


def _show(event: Any) -> None:
    if isinstance(event, StreamStdoutEvent):
        _write(sys.stdout, event.data)
    elif isinstance(event, StreamStderrEvent):
        _write(sys.stderr, event.data)


def _stop(capsule: Any, stream: Any) -> None:
    """Stop the remote command after Ctrl-C: SIGTERM, a grace period, then SIGKILL."""
    import time

    from .._exceptions import DeadlineReached

    if stream.pid is None:
        stream.stop()
        return
    for signal in ("SIGTERM", "SIGKILL"):
        try:
            capsule.commands.kill(stream.pid, signal=signal)
        except WrennNotFoundError:
            break
        deadline = time.monotonic() + CLI_STOP_GRACE
        try:
            while True:
                event = stream.next_event(deadline)
                _show(event)
                if event is None or isinstance(event, (StreamExitEvent, StreamErrorEvent)):
                    return
        except (DeadlineReached, WrennStreamError):
            continue
    stream.stop()


@click.command(
    "exec",
    context_settings=CONTEXT_SETTINGS,
)
@click.argument("capsule_id", metavar="CAPSULE")
@click.argument("argv", nargs=-1, required=True)
@click.option("--shell", "-s", "use_shell", is_flag=True, help="Run ARGV as one /bin/sh -c line.")
@click.option("--cwd", default=None, help="Working directory inside the capsule.")
@click.option("--env", "-e", "env", multiple=True, metavar="NAME=VALUE", help="Set a variable.")
@pass_state
def exec_(
    state: State,
    capsule_id: str,
    argv: tuple[str, ...],
    use_shell: bool,
    cwd: str | None,
    env: tuple[str, ...],
) -> int:
    """Run a command in CAPSULE, streaming its stdout and stderr, and exit with its exit code.

    ARGV runs as a program and its arguments (no shell) unless --shell. Ctrl-C stops the
    remote command (SIGTERM, then SIGKILL after 2 s) and exits 130.

    \b
    Examples:
      wrenn exec cl-0123456789abcdef -- ls -la /root
      wrenn exec cl-0123456789abcdef --env CI=1 --cwd /workspace -- make test
      wrenn exec -s cl-0123456789abcdef -- 'echo $HOME | tr a-z A-Z'
    """
    envs = _parse_env(env)
    capsule = state.capsule(capsule_id)
    if use_shell:
        stream = capsule.commands.stream(" ".join(argv), envs=envs, cwd=cwd)
    else:
        stream = capsule.commands.stream(argv[0], list(argv[1:]), envs=envs, cwd=cwd)
    try:
        with stream:
            try:
                for event in stream:
                    _show(event)
                    if isinstance(event, StreamErrorEvent):
                        raise WrennStreamError(
                            "command_error",
                            f"could not run {shlex.join(argv)}: {event.data}",
                        )
            except KeyboardInterrupt:
                with contextlib.suppress(Exception):
                    _stop(capsule, stream)
                return EXIT_INTERRUPTED
    except BrokenPipeError:
        with contextlib.suppress(Exception):
            _stop(capsule, stream)
        raise
    return stream.exit_code if stream.exit_code is not None else 1
