"""The process-wide overload state: the defences' counters, and the buffer budget.

A sidecar's defences fire inside servers that know nothing of the mesh's `Stats`, so they
count here; the sidecar hands `report_to` its `Stats.incr`, and every count from then on
(and every count before) lands in `/stats` and `/stats/prometheus` as `sofamesh_<name>_total`.

The buffer budget (Envoy's overload manager with a `shrink_heap`/`stop_accepting_requests`
pair on heap size, counted here rather than measured): bytes held in request and response
buffers across every connection. Servers `hold` what they buffer and `release` it when the
buffer is gone; past `limit`, `over` is true and new work is shed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("sofamesh.overload")

DEFAULT_BUFFER_BUDGET = 512 * 1024 * 1024


class Overload:
    """Counters of the defences that fired, and the bytes buffered across the process."""

    def __init__(self, limit: int = DEFAULT_BUFFER_BUDGET) -> None:
        self.limit = limit
        self.held = 0
        self.counters: dict[str, int] = {}
        self._sink: Callable[[str, int], None] | None = None

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


OVERLOAD = Overload()
