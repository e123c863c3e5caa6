"""`sofamesh ctl top -w WS`: golden metrics per service and per caller -> service, refreshed."""

from __future__ import annotations

import sys
import time
from typing import Any

from sofamesh.cli.client import OK, Client
from sofamesh.cli.output import Column, emit

CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen (ANSI)

TOP_COLUMNS: list[Column] = [
    ("SERVICE", lambda r: r["service"]),
    ("CALLER", lambda r: r["caller"]),
    ("RPS", lambda r: r["rps"]),
    ("SUCCESS", lambda r: r["success_rate"]),
    ("P99MS", lambda r: r["p99_ms"]),
]


def rows(services: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per service (caller "*"), then one per caller -> service edge."""
    out = []
    for s in services:
        out.append({"service": s["name"], "caller": "*", **s["metrics"]})
        for c in s["consumers"]:
            out.append({"service": s["name"], "caller": c["app"], **c["metrics"]})
    return out


def run_top(client: Client, workspace: str, interval: float, count: int, fmt: str) -> int:
    shown = 0
    while True:
        data = rows(client.call("GET", f"/api/v1/workspaces/{workspace}/services"))
        if fmt == "json":
            emit(data, "json")
        else:
            if sys.stdout.isatty():
                sys.stdout.write(CLEAR)
            sys.stdout.write(f"sofamesh top -w {workspace}   {time.strftime('%H:%M:%S')}\n\n")
            emit(data, "table", TOP_COLUMNS)
        sys.stdout.flush()
        shown += 1
        if count and shown >= count:
            return OK
        time.sleep(interval)
