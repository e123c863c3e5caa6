"""The overload actions on memory: reset the biggest holders of buffers, give the heap back.

Envoy's overload manager samples its resource monitors every `refresh_interval` and fires
actions past their triggers; two of them are these:

- `envoy.overload_actions.reset_high_memory_stream`: past the high watermark of the buffer
  budget (`reset_above`, a share of `buffer_budget`), the holders of the most buffered
  bytes (an HTTP/2 stream's held response, an HTTP/1.1 connection's exchange, a Bolt or
  Dubbo connection's half-received frame and unread replies) are reset or closed, biggest
  first, until what they held brings the total under the low watermark (`reset_to`). The
  budget alone only sheds *new* work; this takes back what work already holds, so a few
  clients that pinned the budget cannot keep everyone else shed. Each reset is a warning
  naming its peer, counted as `overload_resets`.
- `envoy.overload_actions.shrink_heap`: after a large release, the heap's free pages go
  back to the OS (`transport/heap.py`), counted as `heap_trims`. When the budget's count
  fell by a trim's worth but the heap did not see the bytes come back, they are waiting
  for the cycle collector (a cancelled task's traceback keeps its frames, and their
  buffers, alive: on trio, 16 dropped connections kept 60 MiB until a collection), so a
  full collection runs first (once the count fell by a quarter of a trim's worth), on the
  loop, at most once per trim interval. A trim can land in the middle of a release (16
  connections dropped over half a second, the trim after the first nine): once the count
  has fallen by a quarter of a trim's worth since it, one follow-up trim takes the rest
  at that lower threshold, when the interval allows.

One task per process samples every `interval` (0.25 s): a comparison, and `mallinfo2`
(about 15 us). Nothing is added to a request's path; holders are found by walking the
servers' connections (`Overload.holders`) only once past the high watermark.

An idle process should not wake four times a second to find nothing: while the budget
holds nothing and no release waits for its trim (or follow-up), each sample doubles the
wait, up to `idle_interval` (2 s, never under `interval`); a sample that finds anything
held, or the first after it went, snaps it back to `interval`. The budget's count is a
bare attribute bumped on every request's path, so it cannot raise an event without a
call per request: the cost of backing off is that work which starts and ends entirely
between two idle samples has its trim up to `idle_interval` late, and a budget filled
from idle has its first reset as late (shedding refuses new work meanwhile).
"""

from __future__ import annotations

import gc
import logging
import time

import anyio
import anyio.abc
import anyio.to_thread

from sofamesh.transport.budget import OVERLOAD, Overload
from sofamesh.transport.heap import HeapTrimmer

log = logging.getLogger("sofamesh.overload")

INTERVAL = 0.25
IDLE_INTERVAL = 2.0


class Reclaimer:
    """Samples the buffer budget and the heap every `interval`; fires the two actions."""

    def __init__(
        self,
        overload: Overload = OVERLOAD,
        *,
        reset_above: float = 1.0,
        reset_to: float = 0.8,
        interval: float = INTERVAL,
        idle_interval: float = IDLE_INTERVAL,
        trimmer: HeapTrimmer | None = None,
    ) -> None:
        if not 0 < reset_to <= reset_above:
            raise ValueError(f"reset_to ({reset_to}) must be in (0, reset_above={reset_above}]")
        self.overload = overload
        self.reset_above = reset_above
        self.reset_to = reset_to
        self.interval = interval
        self.idle_interval = max(idle_interval, interval)  # never shorter than a busy one
        self.wait = interval  # until the next sample: `interval`, longer while idle
        self._held_sampled = overload.held  # the budget's count at the last sample
        self.trimmer = trimmer
        self._held_peak = overload.held  # the budget's count at its highest since a collection
        self._collect_after = 0.0  # at most one collection per trim interval
        # The budget's count at the last full trim, while its follow-up is still to come.
        self._held_at_trim: int | None = None

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Sample until cancelled (start it in the process's task group)."""
        task_status.started()
        while True:
            await anyio.sleep(self.wait)
            self.sample()
            await self.trim_if_due()

    def sample(self) -> None:
        """Reset past the high watermark; set the wait until the next sample."""
        self.reset_biggest()
        held, before = self.overload.held, self._held_sampled
        self._held_sampled = held
        if held or before or self._held_at_trim is not None:
            self.wait = self.interval
        else:  # nothing held now or at the last sample, no release to follow: back off
            self.wait = min(self.wait * 2, self.idle_interval)

    def reset_biggest(self) -> int:
        """Past the high watermark, reset the biggest holders until what they held brings
        the total under the low one; how many were reset. Their bytes leave the budget as
        their tasks end, so the excess is counted down by what each held."""
        overload = self.overload
        if overload.held <= overload.limit * self.reset_above:
            return 0
        excess = overload.held - overload.limit * self.reset_to
        reset = 0
        for size, who, let_go in overload.holders():
            if excess <= 0:
                break
            log.warning(
                "overload: %d bytes buffered, over %d (%g x the buffer budget): resetting %s, "
                "which holds %d",
                overload.held, overload.limit * self.reset_above, self.reset_above, who, size,
            )  # fmt: skip
            let_go()
            overload.count("overload_resets")
            excess -= size
            reset += 1
        return reset

    async def trim_if_due(self) -> bool:
        """Trim the heap in a worker thread when a large release made it worth it."""
        trimmer, held = self.trimmer, self.overload.held
        self._held_peak = max(self._held_peak, held)
        now = time.monotonic()
        if trimmer is None or not trimmer.ready(now):
            return False
        collected = 0.0
        # A quarter of a trim's worth released by the count is enough to look: the freed
        # bytes may be the rest of a release the heap already saw in part.
        if self._held_peak - held >= trimmer.after_bytes / 4 and now >= self._collect_after:
            self._held_peak, self._collect_after = held, now + trimmer.interval
            started = time.perf_counter()
            gc.collect()  # buffers kept alive by reference cycles are freed now
            collected = (time.perf_counter() - started) * 1000
        quarter = trimmer.after_bytes // 4
        follow_up = self._held_at_trim is not None and self._held_at_trim - held >= quarter
        if not trimmer.due(now, quarter if follow_up else None):
            return False
        self._held_at_trim = None if follow_up else held
        started = time.perf_counter()
        await anyio.to_thread.run_sync(trimmer.trim, now)
        took = (time.perf_counter() - started) * 1000
        self.overload.count("heap_trims")
        log.info("overload: heap trimmed after %s in %.1f ms (a collection before it: "
                 "%.1f ms)", "the rest of a release" if follow_up else "a large release",
                 took, collected)  # fmt: skip
        return True
