"""Output for people (rich tables) and for scripts (``--json``)."""

from __future__ import annotations

import datetime as _dt
import enum
import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

_stdout: Console | None = None
_stderr: Console | None = None


def stdout() -> Console:
    global _stdout
    if _stdout is None:
        # Piped output is not cut to 80 columns: ids must survive `| grep`.
        _stdout = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 200)
    return _stdout


def stderr() -> Console:
    global _stderr
    if _stderr is None:
        _stderr = Console(stderr=True)
    return _stderr


def plain(value: Any) -> Any:
    """A model, dataclass, enum or date as JSON-ready data."""
    if hasattr(value, "to_dict"):
        return plain(value.to_dict())
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if hasattr(value, "__dataclass_fields__"):
        return {name: plain(getattr(value, name)) for name in value.__dataclass_fields__}
    return value


def print_json(value: Any, *, compact: bool = False) -> None:
    data = plain(value)
    text = json.dumps(data, separators=(",", ":")) if compact else json.dumps(data, indent=2)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, _dt.datetime):
        return value.astimezone(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)


def print_table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str = "nothing"
) -> None:
    rows = list(rows)
    if not rows:
        stderr().print(f"({empty})")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in columns:
        table.add_column(name, no_wrap=True)
    for row in rows:
        table.add_row(*(cell(value) for value in row))
    stdout().print(table)


def print_record(fields: Sequence[tuple[str, Any]]) -> None:
    """One object as a two-column table of name and value."""
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(no_wrap=True)
    for name, value in fields:
        table.add_row(name, cell(value))
    stdout().print(table)


def fields_of(model: Any) -> list[tuple[str, Any]]:
    """The fields of a model that have a value, in declaration order."""
    names = getattr(model, "__struct_fields__", ())
    return [(name, getattr(model, name)) for name in names if getattr(model, name) is not None]


def human_size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(size)
