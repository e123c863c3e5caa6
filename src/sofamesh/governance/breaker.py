"""Circuit breaking per resource, after Sentinel's ``DegradeRule`` circuit breakers (1.8+).

Theory of operation (one `CircuitBreaker` per resource: a service, or a
service and method)::

             threshold exceeded                    recovery_timeout passed
    CLOSED ---------------------> OPEN ----------------------------------> HALF_OPEN
      ^                            ^  (first `allow` after the timeout)       |
      |                            +------ any probe failed or slow ----------+
      +-------------------- all `half_open_probes` probes succeeded ----------+

- CLOSED: every call is admitted; each outcome goes into a sliding window
  (`stat_interval` seconds in `buckets` buckets, see `window.RollingWindow`).
  After each outcome, once the window holds at least `min_request_count`
  calls, the strategy compares it with `threshold`:

  ==================  ========================================  =====================
  Strategy            opens when                                Sentinel grade
  ==================  ========================================  =====================
  SLOW_REQUEST_RATIO  slow/total > threshold (or both == 1.0);  ``DEGRADE_GRADE_RT``
                      slow means elapsed > max_response_time
  ERROR_RATIO         errors/total > threshold                  ``..._EXCEPTION_RATIO``
  ERROR_COUNT         errors > threshold                        ``..._EXCEPTION_COUNT``
  ==================  ========================================  =====================

- OPEN: every call is rejected until `recovery_timeout` (Sentinel's
  ``timeWindow``) has passed since the breaker opened.
- HALF_OPEN: the first `half_open_probes` calls are admitted as probes, the
  rest rejected. Sentinel admits a single probe; a larger number gives a
  flaky-but-recovering resource a firmer verdict. A failed probe -- or a slow
  one, where `max_response_time` is set -- reopens the breaker at once and
  restarts the recovery timeout; when every probe has succeeded the breaker
  closes with an empty window. Sentinel's RT breaker ignores errors in a probe
  and its error breakers ignore slowness; here a probe that fails never closes
  the breaker.

`allow(now)` returns a `Permit`; hand it back to `record(permit, ...)` with the
outcome (or to `cancel(permit)` if the call never ran), so a probe from an
earlier half-open period cannot close a later one. The breaker never reads a
clock: time arrives as `now`, seconds on a monotonic clock.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import Any

import attrs

from sofamesh.governance.shadow import (
    EnforcementConfig,
    EnforcementStatistics,
    Enforcer,
    Verdict,
)
from sofamesh.governance.window import RollingWindow


class Strategy(enum.Enum):
    SLOW_REQUEST_RATIO = "slow_request_ratio"
    ERROR_RATIO = "error_ratio"
    ERROR_COUNT = "error_count"


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# Enum members read through module names on the call path: on Python 3.11 `Enum.X` goes
# through `EnumType.__getattr__`'s slow path (about 400 instructions a read).
_CLOSED, _OPEN, _HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
_ADMITTED = Verdict.ADMIT


def _positive(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attr.name} must be a positive number, got {value}")


@attrs.frozen(kw_only=True)
class BreakerConfig:
    """One circuit-breaking rule; defaults follow Sentinel's ``DegradeRule`` where it has one.

    `threshold` is a ratio in 0..1 for the two ratio strategies and a count of
    errors for ERROR_COUNT (Sentinel's ``count``/``slowRatioThreshold``).
    Times are seconds. `max_response_time` (Sentinel's ``count`` in RT mode) is
    required for SLOW_REQUEST_RATIO; set for the error strategies, it makes a
    slow probe reopen the breaker too.
    """

    strategy: Strategy = Strategy.ERROR_RATIO
    threshold: float = 0.5
    max_response_time: float | None = attrs.field(default=None)
    min_request_count: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    recovery_timeout: float = attrs.field(default=5.0, validator=_positive)
    stat_interval: float = attrs.field(default=1.0, validator=_positive)
    buckets: int = attrs.field(default=10, validator=attrs.validators.in_(range(1, 1001)))
    half_open_probes: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    enforcement: EnforcementConfig = attrs.field(factory=EnforcementConfig)

    @max_response_time.validator
    def _check_rt(self, attr: attrs.Attribute[float | None], value: float | None) -> None:
        if value is not None:
            _positive(self, attr, value)
        elif self.strategy is Strategy.SLOW_REQUEST_RATIO:
            raise ValueError("max_response_time is required for the slow_request_ratio strategy")

    def __attrs_post_init__(self) -> None:
        if self.strategy is Strategy.ERROR_COUNT:
            if self.threshold < 0 or not math.isfinite(self.threshold):
                raise ValueError(f"threshold must be a count >= 0, got {self.threshold}")
        elif not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be a ratio within 0..1, got {self.threshold}")


@attrs.frozen(slots=True)
class Permit:
    """The breaker's answer to one `allow`; `probe` > 0 marks a half-open probe."""

    verdict: Verdict
    probe: int = 0  # the half-open period this probe belongs to
    # A field, not a property: read on every call.
    admitted: bool = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "admitted", self.verdict is not Verdict.REJECT)


ADMIT = Permit(Verdict.ADMIT)
_REJECT = Permit(Verdict.REJECT)
_SHADOW = Permit(Verdict.SHADOW)
_SKIP = Permit(Verdict.SKIP)


@attrs.frozen
class BreakerStatistics:
    state: BreakerState
    window_total: int  # calls in the current statistics window
    window_errors: int
    window_slow: int
    admitted: int  # calls admitted since creation (probes included)
    opened: int  # transitions into OPEN
    next_retry_at: float | None  # when OPEN: the earliest half-open time
    probes_in_flight: int
    enforcement: EnforcementStatistics


class CircuitBreaker:
    """The breaker of one resource. Not thread-safe: one event loop owns it."""

    __slots__ = (
        "_check",
        "_epoch",
        "_next_retry",
        "_opened",
        "_probe_ok",
        "_probes",
        "_slow_after",
        "_watched",
        "_window",
        "admitted",
        "config",
        "enforcer",
        "state",
    )

    def __init__(self, config: BreakerConfig, rand: Callable[[], float] | None = None) -> None:
        self.config = config
        self.state = _CLOSED
        self._window = RollingWindow(config.stat_interval, config.buckets, columns=3)
        self.enforcer = Enforcer(config.enforcement, rand)
        rt = config.max_response_time
        self._slow_after = math.inf if rt is None else float(rt)
        self._check = _STRATEGY_CHECKS[config.strategy]
        # The window column the strategy reads (errors, or slow calls): while it is zero no
        # threshold (>= 0) is exceeded, so a healthy window skips the check's call.
        self._watched = 2 if config.strategy is Strategy.SLOW_REQUEST_RATIO else 1
        self._next_retry = 0.0
        self._epoch = 0  # half-open periods so far; a probe carries the one it was admitted in
        self._probes = 0  # probes admitted in the current half-open period
        self._probe_ok = 0  # probes of the current period that succeeded
        self.admitted = 0
        self._opened = 0

    def allow(self, now: float) -> Permit:
        """May a call go ahead? O(1); never allocates except for a half-open probe."""
        if self.state is _CLOSED:
            enforcer = self.enforcer
            if not (enforcer.always or enforcer.sample()):
                return _SKIP
            self.admitted += 1
            return ADMIT
        if not self.enforcer.sample():
            return _SKIP
        if self.state is _OPEN:
            if now < self._next_retry:
                return _SHADOW if self.enforcer.reject() is Verdict.SHADOW else _REJECT
            self.state = _HALF_OPEN  # Sentinel: fromOpenToHalfOpen on the first try
            self._epoch += 1
            self._probes = self._probe_ok = 0
        if self._probes < self.config.half_open_probes:
            self._probes += 1
            self.admitted += 1
            return Permit(Verdict.ADMIT, self._epoch)
        return _SHADOW if self.enforcer.reject() is Verdict.SHADOW else _REJECT

    def record(self, permit: Permit, failed: bool, elapsed: float, now: float) -> None:
        """The outcome of a call admitted by `permit`; `elapsed` in seconds.

        Outcomes of shadowed or skipped calls are ignored: an enforcing
        breaker would not have let them run.
        """
        if permit.verdict is not _ADMITTED:
            return
        # Counted in the window inline (now's slot, the running sums): this runs on every call.
        window = self._window
        base = window.base if now < window.end else window.roll(now)
        cells, totals = window.cells, window.sums
        cells[base] += 1
        totals[0] += 1
        if failed:
            cells[base + 1] += 1
            totals[1] += 1
        # A compare that jumps, of two floats, is specialised; `slow = a > b` is not.
        slow = False
        if elapsed > self._slow_after:
            slow = True
            cells[base + 2] += 1
            totals[2] += 1
        if permit.probe:
            self._record_probe(permit.probe, failed or slow, now)
        elif (
            self.state is _CLOSED
            and totals[self._watched]
            and totals[0] >= self.config.min_request_count
            and self._check(self, totals)
        ):
            self._open(now)

    def cancel(self, permit: Permit, now: float) -> None:
        """The admitted call never ran (stopped by a later filter): free its probe slot.

        Sentinel returns a blocked probe's breaker to OPEN; freeing the slot
        instead lets the next call probe without waiting a whole recovery timeout.
        """
        if permit.probe and permit.probe == self._epoch and self.state is _HALF_OPEN:
            self._probes -= 1

    def _record_probe(self, epoch: int, bad: bool, now: float) -> None:
        if epoch != self._epoch or self.state is not _HALF_OPEN:
            return  # a straggler from an earlier half-open period
        if bad:
            self._open(now)
            return
        self._probe_ok += 1
        if self._probe_ok >= self.config.half_open_probes:
            self.state = _CLOSED
            self._window.reset()  # Sentinel: resetStat() on HALF_OPEN -> CLOSED

    def _open(self, now: float) -> None:
        self.state = _OPEN
        self._next_retry = now + self.config.recovery_timeout
        self._opened += 1

    def _slow_ratio_exceeded(self, totals: list[int]) -> bool:
        ratio = totals[2] / totals[0]
        threshold = self.config.threshold
        # Sentinel: a ratio threshold of 1.0 still opens when every call is slow.
        return ratio > threshold or (ratio == threshold == 1.0)

    def _error_ratio_exceeded(self, totals: list[int]) -> bool:
        return totals[1] / totals[0] > self.config.threshold

    def _error_count_exceeded(self, totals: list[int]) -> bool:
        return totals[1] > self.config.threshold

    def statistics(self, now: float) -> BreakerStatistics:
        total, errors, slow = self._window.totals(now)
        return BreakerStatistics(
            state=self.state,
            window_total=total,
            window_errors=errors,
            window_slow=slow,
            admitted=self.admitted,
            opened=self._opened,
            next_retry_at=self._next_retry if self.state is _OPEN else None,
            probes_in_flight=self._probes - self._probe_ok if self.state is _HALF_OPEN else 0,
            enforcement=self.enforcer.statistics(),
        )


_STRATEGY_CHECKS: dict[Strategy, Callable[[CircuitBreaker, list[int]], bool]] = {
    Strategy.SLOW_REQUEST_RATIO: CircuitBreaker._slow_ratio_exceeded,
    Strategy.ERROR_RATIO: CircuitBreaker._error_ratio_exceeded,
    Strategy.ERROR_COUNT: CircuitBreaker._error_count_exceeded,
}
