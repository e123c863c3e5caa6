"""What the sidecar's process gives up to idle in less memory, set before it imports the mesh.

attrs writes the source of every method it generates (each class's `__init__`,
`__eq__`, `__repr__` ...) into `linecache`, so that a debugger can step through
it: about 150 classes' worth, 0.6 MB that an idle sidecar keeps for nothing. The
sidecar's process keeps them out (a traceback through a generated method shows
no source line there); an SDK app, a test run or the control plane keep them.
Dropping them after start-up would not do: the freed blocks would stay in
pymalloc's arenas among the objects made after them.

argparse asks `shutil` for the terminal's width each time it makes a help
formatter (every `add_argument` does), and `shutil` brings `bz2`, `lzma` and
their libraries: `HelpFormatter` finds the width as `shutil.get_terminal_size`
does, without them.

trio imports, at its top, modules that only some of its paths run: `ctypes.util`
imports `shutil` (with `bz2`, `lzma`, `zlib`) and `tempfile` for its fall-backs
when `ldconfig` cannot find a library, its DTLS imports `hmac` (and with it
`hashlib` and OpenSSL's digests) for its cookies, and its sockets import `idna`
(with its tables and `unicodedata`) for host names that are not ASCII. On trio,
the sidecar binds these by `lazy_imports.lazy_module` before trio loads, so each
runs with the first read of one of its names (the module is then the real one,
whoever imported it) and an idle sidecar runs none of them. A first read from
another thread is safe too: `lazy_module` runs a module once, under a lock.
"""

from __future__ import annotations

import argparse
import linecache
import os
import sys
from typing import Any

from sofamesh.lazy_imports import lazy_module

GENERATED = "<attrs generated"  # how the names of its source begin: "<attrs generated init ...>"


class _WithoutGeneratedSource(dict[str, Any]):
    """`linecache.cache`, refusing the entries attrs adds (with `setdefault`, as attrs does)."""

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key.startswith(GENERATED):
            return default  # attrs reads this as "its entry is in place" and moves on
        return super().setdefault(key, default)


def keep_no_generated_source() -> None:
    """From now on, attrs classes made in this process leave no source in `linecache`."""
    if not isinstance(linecache.cache, _WithoutGeneratedSource):
        linecache.cache = _WithoutGeneratedSource(linecache.cache)


# What trio imports at its top and an idle sidecar on trio never runs (see above).
TRIO_DEFERRED = ("shutil", "tempfile", "hmac", "idna")


def defer_trio_imports() -> None:
    """Bind `TRIO_DEFERRED` to run on first use; before trio is imported to take effect."""
    for name in TRIO_DEFERRED:
        lazy_module(name)


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, handed the width it would ask `shutil` for (`formatter_class`)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=terminal_columns() - 2)  # argparse's own margin


def terminal_columns(fallback: int = 80) -> int:
    """`shutil.get_terminal_size().columns`: $COLUMNS, else the terminal's, else `fallback`."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    stdout = sys.__stdout__
    if stdout is None:
        return fallback
    try:
        return os.get_terminal_size(stdout.fileno()).columns or fallback
    except (ValueError, OSError):  # closed, detached, not a terminal
        return fallback
