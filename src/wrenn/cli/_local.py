"""``wrenn local serve``: the embedded Wrenn-compatible server, as ``python -m wrenn.local``."""

from __future__ import annotations

import click

from ._app import CONTEXT_SETTINGS

ISOLATION = ("auto", "bwrap", "none")


@click.group(context_settings=CONTEXT_SETTINGS)
def local() -> None:
    """The embedded local server (needs the extra wrenn[local]).

    \b
    Example:
      wrenn local serve --port 9725
    """


@local.command("serve", context_settings=CONTEXT_SETTINGS)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=0, help="Port (default: a free one)."
)
@click.option("--state-dir", default=None, help="Keep state here (default: a temporary dir).")
@click.option("--isolation", type=click.Choice(ISOLATION), default="auto", show_default=True)
@click.option("--api-key", "server_key", default=None, help="Key to accept (default: generated).")
@click.option(
    "--transition-delay",
    type=click.FloatRange(min=0),
    default=0.0,
    metavar="SECONDS",
    help="How long each transitional status lasts.",
)
def serve(
    host: str,
    port: int,
    state_dir: str | None,
    isolation: str,
    server_key: str | None,
    transition_delay: float,
) -> int:
    """Run a local Wrenn server until Ctrl-C or SIGTERM.

    It prints WRENN_BASE_URL=... and WRENN_API_KEY=... lines to export.

    \b
    Examples:
      wrenn local serve --port 9725
      wrenn local serve --state-dir ~/.local/share/wrenn-local   # keeps its capsules
    """
    try:
        from ..local.__main__ import main as serve_main
    except ImportError as exc:
        raise click.UsageError(
            f"the local server needs its extra: pip install 'wrenn[local]' ({exc})"
        ) from None
    argv = ["--host", host, "--port", str(port), "--isolation", isolation]
    argv += ["--transition-delay", repr(transition_delay)]
    if state_dir is not None:
        argv += ["--state-dir", state_dir]
    if server_key is not None:
        argv += ["--api-key", server_key]
    return serve_main(argv)
