"""The process-wide overload state: the defences' counters, and the buffer budget.

A sidecar's defences fire inside servers that know nothing of the mesh's `Stats`, so they
count here; the sidecar hands `report_to` its `Stats.incr`, and every count from then on
(and every count before) lands in `/stats` and `/stats/prometheus` as `sofamesh_<name>_total`.

The buffer budget (Envoy's overload manager with a `shrink_heap`/`stop_accepting_requests`
pair on heap size, counted here rather than measured): bytes held in request and response
buffers across every connection. Servers `hold` what they buffer and `release` it when the
buffer is gone; past `limit`, `over` is true and new work is shed. A body streamed rather
than buffered (HTTP/1.1 above its threshold) counts only its piece in flight.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Protocol

log = logging.getLogger("sofamesh.overload")

DEFAULT_BUFFER_BUDGET = 256 * 1024 * 1024
SHED_LOG_EVERY = 1.0  # seconds between two "shedding" log lines (each names its peer)
OVERLOAD_HEADER = (b"x-sofamesh-overload", b"buffers")


# One thing holding buffers that the overload action may take back: its bytes, who it is
# for (the log names them), and how to let go of it (reset a stream, close a connection).
Holding = tuple[int, str, Callable[[], object]]


class Holders(Protocol):
    """A server whose connections hold buffers (`transport/reclaim.py` resets the biggest)."""

    def holders(self) -> Iterator[Holding]: ...


class Overload:
    """Counters of the defences that fired, and the bytes buffered across the process."""

    def __init__(self, limit: int = DEFAULT_BUFFER_BUDGET) -> None:
        self.limit = limit
        self.held = 0
        self.counters: dict[str, int] = {}
        self._sink: Callable[[str, int], None] | None = None
        self._logged_at = -SHED_LOG_EVERY
        # The servers counting here, asked for their holders only past the high watermark.
        self.servers: weakref.WeakSet[Holders] = weakref.WeakSet()

    def watch(self, server: Holders) -> None:
        """Let the overload action look at `server`'s holders (for as long as it lives)."""
        self.servers.add(server)

    def holders(self) -> list[Holding]:
        """Everything holding buffers right now, biggest first."""
        found = [h for server in list(self.servers) for h in server.holders() if h[0] > 0]
        found.sort(key=lambda h: h[0], reverse=True)
        return found

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n
        if self._sink is not None:
            self._sink(name, n)

    def report_to(self, sink: Callable[[str, int], None]) -> None:
        """Send every count, past and future, to `sink` as well (a mesh's `Stats.incr`)."""
        self._sink = sink
        for name, n in self.counters.items():
            sink(name, n)

    def hold(self, nbytes: int) -> None:
        self.held += nbytes

    def release(self, nbytes: int) -> None:
        self.held -= nbytes

    @property
    def over(self) -> bool:
        return self.held > self.limit

    def shed(self, protocol: str, peer: str) -> None:
        """Count a request refused for the budget; log it (at most once a second)."""
        self.count("requests_shed_overload")
        now = time.monotonic()
        if now - self._logged_at >= SHED_LOG_EVERY:
            self._logged_at = now
            log.warning(
                "%s: shedding a request from %s: %d bytes buffered, over the buffer budget of %d",
                protocol,
                peer,
                self.held,
                self.limit,
            )


OVERLOAD = Overload()
