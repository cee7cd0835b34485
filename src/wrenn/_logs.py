"""The ``wrenn`` logger. It records metadata only: method, path, status, attempt, timing.

Headers, bodies and file contents are never logged, so the API key cannot reach a log.
``WRENN_LOG=debug`` (or ``info``) attaches a stderr handler for quick diagnosis.
"""

from __future__ import annotations

import logging
import os

from ._constants import ENV_LOG

logger = logging.getLogger("wrenn")


def _configure_from_env() -> None:
    level = os.environ.get(ENV_LOG, "").strip().lower()
    if level not in ("debug", "info"):
        return
    if not any(getattr(h, "_wrenn_env", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler._wrenn_env = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter("[%(asctime)s %(name)s %(levelname)s] %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if level == "debug" else logging.INFO)


_configure_from_env()
