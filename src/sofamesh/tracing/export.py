"""Finished spans wait in a bounded buffer; one task, owned by the runtime, exports them.

A call never waits for export: `SpanBuffer.put` is a deque append, and a full buffer
drops the new span and counts it (as OpenTelemetry's batch processor does), so a
slow or absent collector costs memory up to `max_buffered_spans` and nothing more.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from typing import Protocol

import anyio
import anyio.abc

from sofamesh.tracing.span import Span

log = logging.getLogger("sofamesh.tracing")


class Exporter(Protocol):
    async def export(self, spans: Sequence[Span]) -> None:
        """Send `spans`; raise `ExportError` when they could not be delivered."""
        ...


class ExportError(Exception):
    """A batch of spans the collector did not take."""


class SpanBuffer:
    """Finished spans, oldest first, at most `limit` of them."""

    def __init__(self, limit: int) -> None:
        self._spans: deque[Span] = deque()
        self._limit = limit
        self.dropped = 0
        self.exported = 0
        self.failed = 0

    def put(self, span: Span) -> None:
        if len(self._spans) >= self._limit:
            self.dropped += 1
            return
        self._spans.append(span)

    def take(self, n: int) -> list[Span]:
        spans = self._spans
        return [spans.popleft() for _ in range(min(n, len(spans)))]

    def __len__(self) -> int:
        return len(self._spans)

    def statistics(self) -> dict[str, int]:
        return {
            "buffered": len(self._spans),
            "dropped": self.dropped,
            "exported": self.exported,
            "failed": self.failed,
        }


class SpanExport:
    """Drains `buffer` into `exporter` every `interval` seconds, and once more at exit."""

    def __init__(
        self, buffer: SpanBuffer, exporter: Exporter, *, interval: float, batch: int, timeout: float
    ) -> None:
        self.buffer = buffer
        self._exporter = exporter
        self._interval = interval
        self._batch = batch
        self._timeout = timeout
        self._exporting = anyio.Lock()  # the final flush waits for a batch in flight

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            await anyio.sleep(self._interval)
            await self.flush()

    async def flush(self) -> None:
        """Export everything buffered now, batch by batch; a failed batch is dropped."""
        async with self._exporting:
            await self._flush()

    async def _flush(self) -> None:
        while len(self.buffer):
            spans = self.buffer.take(self._batch)
            try:
                with anyio.fail_after(self._timeout):
                    await self._exporter.export(spans)
            except (ExportError, TimeoutError) as exc:
                self.buffer.failed += len(spans)
                log.warning("tracing: %d spans not exported: %s", len(spans), exc or "timeout")
                return
            self.buffer.exported += len(spans)

    async def aclose(self) -> None:
        """The last flush, at exit, within the export timeout."""
        with anyio.CancelScope(shield=True):
            await self.flush()
