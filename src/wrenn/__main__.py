"""``python -m wrenn``: the command line (see ``wrenn.cli``)."""

from __future__ import annotations

import sys

from wrenn.cli import main

if __name__ == "__main__":
    sys.exit(main())
