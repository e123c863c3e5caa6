"""Output for people (`-o table`) and for scripts (`-o json`: the API's objects, as documented)."""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

Column = tuple[str, Callable[[dict[str, Any]], Any]]


def when(value: Any) -> str:
    """Epoch seconds as a UTC time; anything else as it is."""
    if isinstance(value, int | float):
        stamp = datetime.datetime.fromtimestamp(value, datetime.UTC)
        return stamp.strftime("%Y-%m-%d %H:%M:%S")
    if value in (None, ""):
        return "-"
    try:
        return when(float(value))
    except (TypeError, ValueError):
        return str(value)


def cell(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], out: TextIO) -> None:
    cells = [[cell(get(r)) for _, get in columns] for r in rows]
    heads = [name for name, _ in columns]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(heads)]
    for line in [heads, *cells]:
        out.write("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() + "\n")


def emit(
    data: Any, fmt: str, columns: Sequence[Column] | None = None, out: TextIO | None = None
) -> None:
    out = out or sys.stdout
    if fmt == "json" or columns is None:
        out.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    table(data if isinstance(data, list) else [data], columns, out)
