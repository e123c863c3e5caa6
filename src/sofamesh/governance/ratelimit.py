"""Flow control of one resource: Sentinel's ``FlowRule`` traffic shaping controllers.

Every limiter has the same shape, so the flow filter (`filters/flow.py`) treats them alike::

    pace = limiter.try_acquire(now)   # Pace: verdict + how long to wait first
    ... if pace.admitted: sleep(pace.delay), call, then limiter.release(pace)
    ... if a later rule rejects the call instead: limiter.cancel(pace, now)

=====================  ==========================================  =====================
Limiter                Semantics                                   Sentinel
=====================  ==========================================  =====================
`QpsLimiter`           sliding window (1 s in 2 buckets); reject   ``DefaultController``
                       when passed-QPS + 1 > count
`WarmUpLimiter`        as above, but the allowed QPS starts at     ``WarmUpController``
                       count / cold_factor and ramps up over
                       `warm_up_period` (token bucket with slope)
`PacingLimiter`        calls spaced 1/count apart; a call waits    ``RateLimiterController``
                       its turn, or is rejected if the wait would
                       exceed `max_queueing_time`; with warm-up,
                       the spacing follows the warm-up rate        ``WarmUpRateLimiter...``
`ConcurrencyLimiter`   reject when count calls are in flight       ``FLOW_GRADE_THREAD``
=====================  ==========================================  =====================

The default QPS behaviour is a sliding window, not a token bucket, because that
is what Sentinel's default (reject) controller does: it compares the passed
QPS of the last second, counted in two 500 ms buckets, with the threshold, so
there is no burst allowance beyond `count` per window. Sentinel measures times
in whole milliseconds; here they are float seconds, so a pacing interval of
1/3 s is exact rather than rounded to 333 ms.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import Protocol

import attrs

from sofamesh.governance.shadow import (
    EnforcementConfig,
    EnforcementStatistics,
    Enforcer,
    Verdict,
)
from sofamesh.governance.window import RollingWindow


class Grade(enum.Enum):
    QPS = "qps"  # Sentinel FLOW_GRADE_QPS
    CONCURRENCY = "concurrency"  # Sentinel FLOW_GRADE_THREAD


class Behavior(enum.Enum):
    REJECT = "reject"  # CONTROL_BEHAVIOR_DEFAULT
    WARM_UP = "warm_up"  # CONTROL_BEHAVIOR_WARM_UP
    PACING = "pacing"  # CONTROL_BEHAVIOR_RATE_LIMITER
    WARM_UP_PACING = "warm_up_pacing"  # CONTROL_BEHAVIOR_WARM_UP_RATE_LIMITER


def _positive(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attr.name} must be a positive number, got {value}")


@attrs.frozen(kw_only=True)
class FlowConfig:
    """One flow rule's limit; defaults are Sentinel's (warm-up 10 s, cold factor 3, 500 ms queue).

    `count` is calls per second for QPS, calls in flight for CONCURRENCY (the
    behaviour is ignored there). Times are seconds.
    """

    count: float = attrs.field(validator=attrs.validators.ge(0.0))
    grade: Grade = Grade.QPS
    behavior: Behavior = Behavior.REJECT
    warm_up_period: float = attrs.field(default=10.0, validator=_positive)
    cold_factor: int = attrs.field(default=3, validator=attrs.validators.ge(2))
    max_queueing_time: float = attrs.field(default=0.5, validator=attrs.validators.ge(0.0))
    stat_interval: float = attrs.field(default=1.0, validator=_positive)
    buckets: int = attrs.field(default=2, validator=attrs.validators.in_(range(1, 1001)))
    enforcement: EnforcementConfig = attrs.field(factory=EnforcementConfig)


@attrs.frozen(slots=True)
class Pace:
    """A limiter's answer: the verdict, and for pacing how long to wait before the call."""

    verdict: Verdict
    delay: float = 0.0
    # A field, not a property: read on every call.
    admitted: bool = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "admitted", self.verdict is not Verdict.REJECT)


ADMIT = Pace(Verdict.ADMIT)
REJECT = Pace(Verdict.REJECT)
SHADOW = Pace(Verdict.SHADOW)
SKIP = Pace(Verdict.SKIP)


@attrs.frozen
class FlowStatistics:
    passed: int  # admitted calls since creation
    window_passed: int  # admitted calls in the current window (QPS limiters)
    in_flight: int  # concurrency limiter only
    delayed: int  # pacing: calls told to wait
    stored_tokens: float  # warm-up: the cold store (Sentinel's storedTokens)
    enforcement: EnforcementStatistics


class FlowLimiter(Protocol):
    # False when `release` does nothing: the filter then holds no frame open for the call.
    holds_calls: bool

    def try_acquire(self, now: float) -> Pace: ...
    def release(self, pace: Pace) -> None: ...
    def cancel(self, pace: Pace, now: float) -> None: ...
    def statistics(self, now: float) -> FlowStatistics: ...


class _WarmUpTokens:
    """Sentinel ``WarmUpController``'s token store, synced once per whole second.

    Tokens start at `max_tokens` (cold). Each new second, the store refills at
    `count` per second -- unless it is above the warning line and last second's
    traffic was at least count/cold_factor -- and then loses last second's passed
    calls. Above the warning line the allowed rate is
    ``1 / ((stored - warning) * slope + 1 / count)``: count/cold_factor at a full
    store, count at the warning line (Guava's SmoothWarmingUp, in QPS).
    """

    __slots__ = ("_cold", "_count", "_last_filled", "_slope", "max_tokens", "stored", "warning")

    def __init__(self, count: float, period: float, cold_factor: int) -> None:
        self._count = count
        self._cold = cold_factor
        self.warning = int(period * count) // (cold_factor - 1)
        self.max_tokens = self.warning + int(2 * period * count / (1.0 + cold_factor))
        span = self.max_tokens - self.warning
        self._slope = (cold_factor - 1.0) / count / span if span > 0 and count > 0 else 0.0
        self.stored = 0
        self._last_filled: int | None = None

    def sync(self, second: int, previous_qps: int) -> None:
        last = self._last_filled
        if last is not None and second <= last:
            return
        old: float = self.stored
        refill = old < self.warning or (
            old > self.warning and previous_qps < int(self._count) // self._cold
        )
        if refill:
            gap = second - last if last is not None else math.inf
            old = min(self.max_tokens, old + gap * self._count)
        self.stored = max(0, int(old) - previous_qps)
        self._last_filled = second

    def rate(self) -> float:
        """The QPS allowed at the current store level."""
        above = self.stored - self.warning
        if above < 0 or self._count <= 0:
            return self._count
        return math.nextafter(1.0 / (above * self._slope + 1.0 / self._count), math.inf)


class _PerSecond:
    """Passed calls this whole second and last (Sentinel's ``previousPassQps``)."""

    __slots__ = ("count", "previous", "second")

    def __init__(self) -> None:
        self.second = -1
        self.count = 0
        self.previous = 0

    def roll(self, now: float) -> int:
        second = int(now // 1.0)
        if second != self.second:
            self.previous = self.count if second == self.second + 1 else 0
            self.count = 0
            self.second = second
        return second


class QpsLimiter:
    """Sentinel's default controller, optionally with warm-up (``WarmUpController``)."""

    holds_calls = False

    __slots__ = ("_cap", "_enforcer", "_interval", "_passed", "_per_sec", "_warm", "_window")

    def __init__(self, config: FlowConfig, rand: Callable[[], float] | None = None) -> None:
        self._window = RollingWindow(config.stat_interval, config.buckets)
        self._interval = config.stat_interval
        self._enforcer = Enforcer(config.enforcement, rand)
        self._passed = 0
        self._warm: _WarmUpTokens | None = None
        self._per_sec = _PerSecond()
        if config.behavior is Behavior.WARM_UP:
            self._warm = _WarmUpTokens(config.count, config.warm_up_period, config.cold_factor)
        # Sentinel: passQps + acquireCount > count, with passQps = passed / interval, i.e.
        # passed > (count - 1) * interval; for a whole `passed`, the same as passed > the
        # floor of it: an int compare, specialised, on every call (None: warm-up's own limit).
        cap = (config.count - 1) * config.stat_interval
        self._cap = (math.floor(cap) if math.isfinite(cap) else cap) if self._warm is None else None

    def try_acquire(self, now: float) -> Pace:
        enforcer = self._enforcer
        if not (enforcer.always or enforcer.sample()):
            return SKIP
        cap = self._cap
        if cap is None:
            assert self._warm is not None
            second = self._per_sec.roll(now)
            self._warm.sync(second, self._per_sec.previous)
            cap = (self._warm.rate() - 1) * self._interval
        # Checked and counted in the window inline (one roll): this runs on every call.
        window = self._window
        slot = window.base if now < window.end else window.roll(now)
        if window.sums[0] > cap:
            return SHADOW if self._enforcer.reject() is Verdict.SHADOW else REJECT
        window.cells[slot] += 1
        window.sums[0] += 1
        if self._warm is not None:  # warm-up's per-second count (nothing else reads it)
            self._per_sec.count += 1
        self._passed += 1
        return ADMIT

    def release(self, pace: Pace) -> None:
        """Nothing to give back: a QPS limit counts admissions, not calls in flight."""

    def cancel(self, pace: Pace, now: float) -> None:
        """Un-count an admission a later rule rejected (Sentinel counts passes after all rules)."""
        if pace.verdict is Verdict.ADMIT:
            self._window.add(now, 0, -1)
            if self._warm is not None:
                self._per_sec.count -= 1
            self._passed -= 1

    def statistics(self, now: float) -> FlowStatistics:
        stored = float(self._warm.stored) if self._warm is not None else 0.0
        return FlowStatistics(
            self._passed, self._window.total(now), 0, 0, stored, self._enforcer.statistics()
        )


class PacingLimiter:
    """Sentinel's ``RateLimiterController`` (leaky bucket): one call every 1/count seconds.

    A call arriving after its turn goes at once and idle time earns no credit
    (no bursts). A call arriving early is told to wait until its turn, unless
    that wait exceeds `max_queueing_time`, when it is rejected. With
    ``Behavior.WARM_UP_PACING`` the spacing follows the warm-up rate
    (``WarmUpRateLimiterController``). A cancelled call keeps its turn, as in
    Sentinel, where the wait has already happened inside the check.
    """

    holds_calls = False

    __slots__ = (
        "_count",
        "_delayed",
        "_enforcer",
        "_latest",
        "_max_wait",
        "_passed",
        "_per_sec",
        "_warm",
    )

    def __init__(self, config: FlowConfig, rand: Callable[[], float] | None = None) -> None:
        self._count = config.count
        self._max_wait = config.max_queueing_time
        self._enforcer = Enforcer(config.enforcement, rand)
        self._latest: float | None = None  # Sentinel's latestPassedTime
        self._passed = 0
        self._delayed = 0
        self._per_sec = _PerSecond()
        self._warm: _WarmUpTokens | None = None
        if config.behavior is Behavior.WARM_UP_PACING:
            self._warm = _WarmUpTokens(config.count, config.warm_up_period, config.cold_factor)

    def try_acquire(self, now: float) -> Pace:
        if not self._enforcer.sample():
            return SKIP
        rate = self._rate(now)
        if rate <= 0:
            return self._reject()
        cost = 1.0 / rate
        latest = self._latest
        if latest is None or latest + cost <= now:
            self._latest = now
            return self._admitted(ADMIT)
        wait = latest + cost - now
        if wait > self._max_wait:
            return self._reject()
        self._latest = latest + cost
        if not self._enforcer.enforce():
            return self._admitted(SHADOW)
        self._delayed += 1
        return self._admitted(Pace(Verdict.ADMIT, wait))

    def _rate(self, now: float) -> float:
        if self._warm is None:
            return self._count
        second = self._per_sec.roll(now)
        self._warm.sync(second, self._per_sec.previous)
        return self._warm.rate()

    def _admitted(self, pace: Pace) -> Pace:
        self._passed += 1
        self._per_sec.count += 1
        return pace

    def _reject(self) -> Pace:
        return SHADOW if self._enforcer.reject() is Verdict.SHADOW else REJECT

    def release(self, pace: Pace) -> None:
        """Nothing to give back."""

    def cancel(self, pace: Pace, now: float) -> None:
        """The turn stays taken (see the class docstring)."""

    def statistics(self, now: float) -> FlowStatistics:
        stored = float(self._warm.stored) if self._warm is not None else 0.0
        return FlowStatistics(
            self._passed, 0, 0, self._delayed, stored, self._enforcer.statistics()
        )


class ConcurrencyLimiter:
    """Sentinel's thread-count grade: at most `count` calls in flight."""

    holds_calls = True

    __slots__ = ("_count", "_enforcer", "_passed", "active")

    def __init__(self, config: FlowConfig, rand: Callable[[], float] | None = None) -> None:
        self._count = config.count
        self._enforcer = Enforcer(config.enforcement, rand)
        self._passed = 0
        self.active = 0

    def try_acquire(self, now: float) -> Pace:
        if not self._enforcer.sample():
            return SKIP
        if self.active + 1 > self._count:
            verdict = self._enforcer.reject()
            if verdict is Verdict.REJECT:
                return REJECT
            self.active += 1  # a shadowed call really is in flight
            return SHADOW
        self.active += 1
        self._passed += 1
        return ADMIT

    def release(self, pace: Pace) -> None:
        """The call admitted with `pace` has finished."""
        if pace.verdict is Verdict.ADMIT or pace.verdict is Verdict.SHADOW:
            if self.active <= 0:
                raise RuntimeError("release without a matching acquire")
            self.active -= 1

    def cancel(self, pace: Pace, now: float) -> None:
        self.release(pace)

    def statistics(self, now: float) -> FlowStatistics:
        return FlowStatistics(self._passed, 0, self.active, 0, 0.0, self._enforcer.statistics())


def build_limiter(config: FlowConfig, rand: Callable[[], float] | None = None) -> FlowLimiter:
    """The limiter a rule's grade and behaviour call for."""
    if config.grade is Grade.CONCURRENCY:
        return ConcurrencyLimiter(config, rand)
    if config.behavior in (Behavior.PACING, Behavior.WARM_UP_PACING):
        return PacingLimiter(config, rand)
    return QpsLimiter(config, rand)
