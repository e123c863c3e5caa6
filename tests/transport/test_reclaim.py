"""The overload actions on memory: the biggest holders reset past the high watermark, the
heap trimmed after a large release."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sofamesh.transport.budget import Holding, Overload
from sofamesh.transport.heap import HeapTrimmer
from sofamesh.transport.reclaim import Reclaimer

MIB = 1024 * 1024


class FakeServer:
    def __init__(self, overload: Overload, sizes: dict[str, int]) -> None:
        self.overload = overload
        self.sizes = sizes
        self.reset: list[str] = []
        overload.watch(self)
        overload.held += sum(sizes.values())

    def holders(self) -> Iterator[Holding]:
        for who, size in self.sizes.items():
            yield size, who, lambda who=who: self.reset.append(who)


def test_nothing_is_reset_under_the_high_watermark() -> None:
    overload = Overload(limit=100 * MIB)
    server = FakeServer(overload, {"a": 60 * MIB, "b": 40 * MIB})
    assert Reclaimer(overload).reset_biggest() == 0
    assert server.reset == [] and "overload_resets" not in overload.counters


def test_the_biggest_go_first_until_under_the_low_watermark(caplog: Any) -> None:
    overload = Overload(limit=100 * MIB)
    one = FakeServer(overload, {"small": 5 * MIB, "biggest": 50 * MIB})
    two = FakeServer(overload, {"big": 30 * MIB, "middle": 20 * MIB, "idle": 0})
    # 105 MiB held, over 100: down to 70 takes the 50 MiB holder (55 left) ... and no more.
    assert Reclaimer(overload, reset_to=0.7).reset_biggest() == 1
    assert one.reset == ["biggest"] and two.reset == []
    assert overload.counters["overload_resets"] == 1
    assert "resetting biggest, which holds 52428800" in caplog.text
    # Its bytes leave as its task ends; until then a second look resets more only if needed.
    overload.held -= 50 * MIB
    assert Reclaimer(overload, reset_to=0.7).reset_biggest() == 0


def test_several_go_when_one_is_not_enough() -> None:
    overload = Overload(limit=100 * MIB)
    server = FakeServer(overload, {f"s{i}": (10 + i) * MIB for i in range(10)})  # 145 MiB
    assert Reclaimer(overload, reset_to=0.8).reset_biggest() == 4  # 19+18+17+16 >= 145-80
    assert server.reset == ["s9", "s8", "s7", "s6"]


def test_the_watermarks_are_checked() -> None:
    with pytest.raises(ValueError, match="reset_to"):
        Reclaimer(Overload(), reset_above=0.8, reset_to=0.9)


def rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / MIB


def burst(mib: int, trimmer: HeapTrimmer) -> list[bytes]:
    """`mib` 1 MiB buffers written, then all but the last freed: it stays on top of the
    heap (as a server's live objects do), so the others make a hole glibc does not give
    back by itself. A freed 4 MiB buffer first raises glibc's mmap threshold past 1 MiB,
    as the first large buffers of a burst do, so the 1 MiB ones come from the heap. The
    trimmer samples the heap at the burst's peak, as the reclaimer's timer would."""
    gc.collect()
    raised = bytes(4 * MIB)
    del raised
    buffers = [bytes([i % 256]) * MIB for i in range(mib)]
    assert not trimmer.due(time.monotonic())
    return buffers[-1:]


def test_the_heap_is_trimmed_after_a_large_release() -> None:
    """64 MiB of 1 MiB buffers written and freed: the heap's free bytes rise by about that
    much, the trim is due, and it gives the pages back (RSS falls by most of it)."""
    trimmer = HeapTrimmer(after_bytes=32 * MIB, interval=5.0)
    assert trimmer.available  # Linux with glibc, as every machine of the suite
    now = time.monotonic()
    assert not trimmer.due(now)
    kept = burst(64, trimmer)
    peak = rss_mib()
    assert trimmer.due(now)
    trimmer.trim(now)
    after = rss_mib()
    assert peak - after > 32, (peak, after)
    assert trimmer.trims == 1
    assert not trimmer.due(now + 1)  # counted from the trim, and not again within 5 s
    assert kept


async def test_the_trim_runs_off_the_loop_and_is_counted(anyio_backend: Any) -> None:
    overload = Overload()
    trimmer = HeapTrimmer(after_bytes=MIB, interval=0.0)
    reclaimer = Reclaimer(overload, trimmer=trimmer)
    kept = burst(8, trimmer)
    assert await reclaimer.trim_if_due()
    assert kept
    assert overload.counters["heap_trims"] == 1


async def test_a_trim_in_the_middle_of_a_release_is_followed_by_one_for_the_rest(
    anyio_backend: Any, caplog: Any
) -> None:
    """A trim that lands halfway through a release (connections dropped one after another)
    leaves the rest resident, less than a trim's worth: once the budget's count has fallen
    by a quarter of a trim's worth since it, one follow-up trim at that threshold takes it;
    without the fall it waits, and after the follow-up the full threshold is back."""
    caplog.set_level(logging.INFO, "sofamesh.overload")
    overload = Overload()
    trimmer = HeapTrimmer(after_bytes=8 * MIB, interval=0.0)
    reclaimer = Reclaimer(overload, trimmer=trimmer)
    gc.collect()
    raised = bytes(4 * MIB)  # glibc's mmap threshold past 1 MiB, as in `burst`
    del raised
    first = [bytes([i]) * MIB for i in range(12)]
    rest = [bytes([i]) * MIB for i in range(6)]
    later = [bytes([i]) * MIB for i in range(6)]
    kept = bytes(MIB)  # on top of the heap, as a server's live objects are
    overload.held = 24 * MIB
    assert not await reclaimer.trim_if_due()  # the peak, sampled
    first.clear()
    overload.held -= 12 * MIB
    assert await reclaimer.trim_if_due()  # halfway: a full trim's worth is free
    rest.clear()
    assert not await reclaimer.trim_if_due()  # 6 MiB free, under 8, and the count still
    overload.held -= 6 * MIB
    assert await reclaimer.trim_if_due()  # the count fell: the rest goes at a quarter
    assert overload.counters["heap_trims"] == 2
    assert "heap trimmed after the rest of a release" in caplog.text
    later.clear()
    overload.held -= 6 * MIB
    assert not await reclaimer.trim_if_due()  # one follow-up per trim: 6 MiB is under 8 again
    assert kept


def test_an_idle_reclaimer_backs_off_and_snaps_back_on_activity() -> None:
    """Nothing held: each sample doubles the wait up to `idle_interval`. A sample that finds
    bytes held, or the first after they went (their trim may be due), waits `interval`."""
    overload = Overload()
    reclaimer = Reclaimer(overload, interval=0.25, idle_interval=2.0)
    waits = []
    for _ in range(6):
        reclaimer.sample()
        waits.append(reclaimer.wait)
    assert waits == [0.5, 1.0, 2.0, 2.0, 2.0, 2.0]
    overload.held += MIB
    reclaimer.sample()
    assert reclaimer.wait == 0.25  # busy: back at once
    overload.held -= MIB
    reclaimer.sample()
    assert reclaimer.wait == 0.25  # the release's sample: its trim may be due now
    reclaimer.sample()
    assert reclaimer.wait == 0.5


def test_a_follow_up_trim_to_come_keeps_the_reclaimer_busy() -> None:
    reclaimer = Reclaimer(Overload(), interval=0.25, idle_interval=2.0)
    reclaimer._held_at_trim = 24 * MIB  # a trim landed halfway through a release
    reclaimer.sample()
    reclaimer.sample()
    assert reclaimer.wait == 0.25


def test_the_idle_interval_is_never_shorter_than_the_busy_one() -> None:
    reclaimer = Reclaimer(Overload(), interval=3600.0, idle_interval=2.0)
    reclaimer.sample()
    assert reclaimer.wait == 3600.0
