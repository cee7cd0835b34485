"""The ``wrenn`` command tree."""

from __future__ import annotations

import click

from .._version import __version__
from ._app import CONTEXT_SETTINGS, EXIT_CODES_HELP, State
from ._control import capsules, events, snapshots, stats, usage
from ._exec import exec_
from ._files import files
from ._local import local
from ._shell import shell


@click.group(
    context_settings=CONTEXT_SETTINGS,
    epilog=EXIT_CODES_HELP,
)
@click.option(
    "--api-key",
    envvar="WRENN_API_KEY",
    default=None,
    show_envvar=True,
    help="Team API key.",
)
@click.option(
    "--base-url",
    envvar="WRENN_BASE_URL",
    default=None,
    show_envvar=True,
    help="API root (default https://app.wrenn.dev/api).",
)
@click.option(
    "--json", "json_output", is_flag=True, help="Print JSON for scripts instead of tables."
)
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
@click.version_option(__version__, "--version", prog_name="wrenn")
@click.pass_context
def cli(
    ctx: click.Context, api_key: str | None, base_url: str | None, json_output: bool, debug: bool
) -> None:
    """Wrenn capsules from the command line: create them, run commands, open a shell, move files.

    Configuration comes from WRENN_API_KEY and WRENN_BASE_URL, as for the SDK. Output is a
    table for people; add --json (anywhere) for scripts.

    \b
    Examples:
      export WRENN_API_KEY=wrn_...
      CAPSULE=$(wrenn capsules create --template minimal -q)
      wrenn exec $CAPSULE -- uname -a
      wrenn shell $CAPSULE
      wrenn files put $CAPSULE ./data.csv /root/data.csv
      wrenn capsules destroy $CAPSULE
    """
    state = ctx.ensure_object(State)
    state.api_key = api_key or None
    state.base_url = base_url or None
    state.json = state.json or json_output
    state.debug = state.debug or debug


cli.add_command(capsules)
cli.add_command(snapshots)
cli.add_command(events)
cli.add_command(usage)
cli.add_command(stats)
cli.add_command(exec_)
cli.add_command(shell)
cli.add_command(files)
cli.add_command(local)
