"""``python -m wrenn.local``: run the embedded server until Ctrl-C or SIGTERM.

``python -m wrenn.local build-image [--cache-dir DIR]`` builds the microVM
backend's guest image once instead (``isolation="microvm"`` needs it).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from ._runtime import isolation_choices
from ._server import LocalServer


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["build-image"]:
        from ._vm.__main__ import main as vm_main

        return vm_main(args_in)
    parser = argparse.ArgumentParser(
        prog="python -m wrenn.local",
        description="Run a local Wrenn-compatible server whose capsules are local sandboxes "
        "(or `python -m wrenn.local build-image` to build the microVM guest image).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: a free port)")
    parser.add_argument(
        "--state-dir", default=None, help="keep state here (default: a temporary dir)"
    )
    parser.add_argument("--isolation", choices=isolation_choices(), default="auto")
    parser.add_argument("--api-key", default=None, help="API key to accept (default: generated)")
    parser.add_argument(
        "--transition-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="how long each transitional status (starting, pausing, ...) lasts (default 0)",
    )
    args = parser.parse_args(args_in)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server = LocalServer(
            state_dir=args.state_dir,
            port=args.port,
            isolation=args.isolation,
            api_key=args.api_key,
            host=args.host,
            transition_delay=args.transition_delay,
        ).start()
    except (RuntimeError, OSError, ValueError) as exc:
        print(f"wrenn.local: {exc}", file=sys.stderr)
        return 1
    try:
        log = logging.getLogger("wrenn.local")
        # The server itself already logged the isolation mode (a warning when none).
        log.info("state dir: %s", server.state_dir)
        print(f"WRENN_BASE_URL={server.base_url}")
        print(f"WRENN_API_KEY={server.api_key}", flush=True)
        while not stop.wait(0.5):
            pass
        log.info("shutting down")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
