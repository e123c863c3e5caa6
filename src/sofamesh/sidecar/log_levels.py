"""Log levels by name, for the command line and the admin API's `POST /logging`.

A module of its own so that parsing `--log-level` does not import the admin API's
handlers, which load with its first request.
"""

from __future__ import annotations

import logging

# Envoy's level names (`warn`, `off` as well) and Python's; `trace` is Python's DEBUG.
LOG_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "off": logging.CRITICAL + 10,
}


def log_level(name: str) -> int:
    """A level by name, any case; ValueError naming the valid ones otherwise."""
    level = LOG_LEVELS.get(name.lower())
    if level is None:
        raise ValueError(f"unknown log level {name!r} (use one of {', '.join(LOG_LEVELS)})")
    return level
