"""The ``wrenn`` command line (``pip install "wrenn[cli]"``), built on the blocking client.

``main()`` is the console script and ``python -m wrenn``. Errors are one line on stderr
with an exit code per class of error (see ``wrenn --help``); ``--debug`` shows tracebacks.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    try:
        from ._app import run
        from ._root import cli
    except ImportError as exc:  # click or rich missing
        import sys

        print(
            f"wrenn: the command line needs its extra: pip install 'wrenn[cli]' ({exc.name} is missing)",
            file=sys.stderr,
        )
        return 1
    return run(cli, argv, prog_name="wrenn")
