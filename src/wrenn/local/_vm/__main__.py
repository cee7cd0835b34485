"""``build-image [--cache-dir DIR]``: build (or find) the VM image.

Reached as ``python -m wrenn.local build-image`` (the server's command line hands
it over) or ``python -m wrenn.local._vm build-image``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ._image import ImageError, build_image, default_cache_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wrenn.local")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build-image", help="build the microVM base image if missing")
    build.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help=f"where images are cached (default: {default_cache_dir()})",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        image = build_image(args.cache_dir)
    except (ImageError, RuntimeError, OSError) as exc:
        print(f"build-image: {exc}", file=sys.stderr)
        return 1
    print(image.directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
