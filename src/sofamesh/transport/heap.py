"""Giving freed heap back to the OS after a burst: glibc's `malloc_trim`, when it pays.

CPython takes buffers (anything over 512 bytes: every body, frame and read) from malloc.
glibc keeps what is freed in its heap for the next allocation, and after a burst of large
buffers its mmap threshold has risen (it follows the largest mmapped chunk freed, up to
32 MiB), so even megabyte buffers come from the heap: once an attack's buffers are freed
the process stays at its peak RSS. `malloc_trim(0)` returns the free pages of every arena
(`madvise(MADV_DONTNEED)`); Envoy's overload manager has the same action, `shrink_heap`
(tcmalloc's `ReleaseFreeMemory`).

When: `HeapTrimmer.due` reads the heap's free bytes (`mallinfo2`, about 15 us) and says
yes once they grew by `after_bytes` since their lowest point after the last trim (a large
release), at most once per `interval`. A trim costs about 30 ms for 50 MiB of free pages
on this machine, so the caller runs it in a worker thread: ctypes drops the GIL for the
call, and the event loop only waits if it allocates while an arena is locked.

Only on Linux with glibc; elsewhere `HeapTrimmer.available` is False and nothing runs.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from typing import Any

log = logging.getLogger("sofamesh.overload")

TRIM_AFTER_BYTES = 32 * 1024 * 1024
TRIM_INTERVAL = 5.0


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _glibc() -> Any | None:
    """glibc with `malloc_trim` and `mallinfo2` (2.33+), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, ValueError, AttributeError):  # musl, an old glibc, no confstr name
        return None
    return libc


class HeapTrimmer:
    """Decides when the heap is worth trimming, and trims it."""

    def __init__(
        self, after_bytes: int = TRIM_AFTER_BYTES, interval: float = TRIM_INTERVAL
    ) -> None:
        self.after_bytes = after_bytes
        self.interval = interval
        self._libc = _glibc()
        self._lowest = self.free_bytes()  # free heap at its lowest since the last trim
        self._trimmed_at = -interval
        self.trims = 0

    @property
    def available(self) -> bool:
        return self._libc is not None

    def free_bytes(self) -> int:
        """Bytes free in malloc's heap (not necessarily given back yet); 0 without glibc."""
        return int(self._libc.mallinfo2().fordblks) if self._libc is not None else 0

    def ready(self, now: float) -> bool:
        """The last trim was long enough ago (and there is a heap to trim)."""
        return self._libc is not None and now - self._trimmed_at >= self.interval

    def due(self, now: float, after_bytes: int | None = None) -> bool:
        """A large release since the last trim (`after_bytes`, the trimmer's own by
        default), and the last trim long enough ago."""
        if self._libc is None:
            return False
        free = self.free_bytes()
        self._lowest = min(self._lowest, free)
        least = self.after_bytes if after_bytes is None else after_bytes
        return free - self._lowest >= least and self.ready(now)

    def trim(self, now: float) -> None:
        """Give the free pages back (blocking: call it from a worker thread)."""
        if self._libc is None:
            return
        self._trimmed_at = now
        self._libc.malloc_trim(0)
        # Trimming leaves the chunks free in malloc's view: the next release counts from here.
        self._lowest = self.free_bytes()
        self.trims += 1


def trim_heap() -> bool:
    """Give malloc's free pages back once, now (start-up's freed buffers and parse trees);
    True if some were. Nothing happens off glibc."""
    libc = _glibc()
    return libc is not None and bool(libc.malloc_trim(0))
