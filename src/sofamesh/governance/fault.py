"""Fault injection decisions: delay and abort a share of calls (Envoy's HTTP fault filter).

Semantics follow Envoy's ``envoy.filters.http.fault``:

- `DelayFault` (``delay``): hold the call for `fixed_delay` seconds, for
  `percentage` percent of calls. With ``from_header=True`` it is Envoy's
  ``header_delay``: the duration comes from the request header
  `DELAY_HEADER` in milliseconds, and a call without it is not delayed.
- `AbortFault` (``abort``): answer with `status` (and the protocol's `code`)
  instead of calling, for `percentage` percent of calls. With
  ``from_header=True`` it is ``header_abort``: the code comes from
  `ABORT_HEADER`, and a call without it is not aborted.
- For a header-controlled fault, the percentage headers (`DELAY_PERCENT_HEADER`,
  `ABORT_PERCENT_HEADER`) can lower the share of calls but never raise it past
  the configured `percentage`, as in Envoy.
- `match_headers` (Envoy's ``headers``): the fault applies only to calls whose
  headers all match (a value of None means "present with any value").
- Delay and abort are drawn independently; a call may get both (delayed, then
  aborted), as in Envoy.
- `max_active_faults`: a call that would get a fault while that many faults
  are active gets none, and is counted in ``faults_overflow``. The filter calls
  `finish(decision)` when a faulted call ends, to free its place.

Header names follow Envoy's ``x-envoy-fault-*`` with our prefix. The injector
never sleeps: `decide` returns the delay, the filter waits it out.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import attrs

from sofamesh.model import Status

DELAY_HEADER = "x-sofamesh-fault-delay-request"
DELAY_PERCENT_HEADER = "x-sofamesh-fault-delay-request-percentage"
ABORT_HEADER = "x-sofamesh-fault-abort-request"
ABORT_PERCENT_HEADER = "x-sofamesh-fault-abort-request-percentage"


class HeaderSource(Protocol):
    """Anything with a lowercase-name `get`, such as `sofamesh.model.Headers`."""

    def get(self, name: str, default: str | None = None) -> str | None: ...


def _percent(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 100.0:
        raise ValueError(f"{attr.name} must be within 0..100, got {value}")


def _non_negative(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{attr.name} must be >= 0, got {value}")


@attrs.frozen(kw_only=True)
class DelayFault:
    """Envoy's ``fixed_delay``, or ``header_delay`` when `from_header` (seconds)."""

    fixed_delay: float = attrs.field(default=0.0, validator=_non_negative)
    from_header: bool = False
    percentage: float = attrs.field(default=100.0, validator=_percent)


@attrs.frozen(kw_only=True)
class AbortFault:
    """Envoy's ``http_status``/``grpc_status``, or ``header_abort`` when `from_header`.

    `status` is the neutral outcome; `code` the protocol's (HTTP 503, a Bolt
    status, ...), which the codec writes.
    """

    status: Status = Status.APP_ERROR
    code: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    from_header: bool = False
    percentage: float = attrs.field(default=100.0, validator=_percent)


def _freeze_match(
    value: Mapping[str, str | None] | None,
) -> tuple[tuple[str, str | None], ...]:
    return tuple(sorted((k.lower(), v) for k, v in (value or {}).items()))


@attrs.frozen(kw_only=True)
class FaultConfig:
    delay: DelayFault | None = None
    abort: AbortFault | None = None
    match_headers: tuple[tuple[str, str | None], ...] = attrs.field(
        default=(), converter=_freeze_match
    )
    max_active_faults: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(0))
    )


@attrs.frozen(slots=True)
class FaultDecision:
    """What to do to one call: wait `delay` seconds first, then abort if `abort` is set."""

    delay: float = 0.0
    abort: Status | None = None
    code: int = 0

    @property
    def injected(self) -> bool:
        return self.delay > 0 or self.abort is not None


NO_FAULT = FaultDecision()


@attrs.frozen
class FaultStatistics:
    delays_injected: int
    aborts_injected: int
    faults_overflow: int
    active_faults: int


class FaultInjector:
    """Draws the faults for each call; `rand` returns floats in [0, 1)."""

    def __init__(self, config: FaultConfig, rand: Callable[[], float] | None = None) -> None:
        self.config = config
        self._rand = rand or random.random
        self._active = 0
        self._delays = 0
        self._aborts = 0
        self._overflow = 0

    def decide(self, headers: HeaderSource) -> FaultDecision:
        cfg = self.config
        if cfg.match_headers and not self._matches(headers):
            return NO_FAULT
        delay = self._draw_delay(cfg.delay, headers) if cfg.delay else 0.0
        abort = self._draw_abort(cfg.abort, headers) if cfg.abort else None
        if delay <= 0 and abort is None:
            return NO_FAULT
        if cfg.max_active_faults is not None and self._active >= cfg.max_active_faults:
            self._overflow += 1
            return NO_FAULT
        self._active += 1
        self._delays += delay > 0
        if abort is None:
            return FaultDecision(delay)
        self._aborts += 1
        return FaultDecision(delay, abort[0], abort[1])

    def finish(self, decision: FaultDecision) -> None:
        """A call that got `decision` has ended: its fault is no longer active."""
        if decision.injected:
            self._active -= 1

    def _matches(self, headers: HeaderSource) -> bool:
        for name, want in self.config.match_headers:
            got = headers.get(name)
            if got is None or (want is not None and got != want):
                return False
        return True

    def _chosen(self, percentage: float, header_percentage: str | None) -> bool:
        if header_percentage is not None:
            value = _parse_number(header_percentage)
            if value is not None:
                percentage = min(percentage, max(0.0, value))  # Envoy: capped by config
        return percentage >= 100.0 or (percentage > 0 and self._rand() * 100.0 < percentage)

    def _draw_delay(self, fault: DelayFault, headers: HeaderSource) -> float:
        if not fault.from_header:
            return fault.fixed_delay if self._chosen(fault.percentage, None) else 0.0
        ms = _parse_number(headers.get(DELAY_HEADER))
        if ms is None or ms <= 0:
            return 0.0
        chosen = self._chosen(fault.percentage, headers.get(DELAY_PERCENT_HEADER))
        return ms / 1000.0 if chosen else 0.0

    def _draw_abort(self, fault: AbortFault, headers: HeaderSource) -> tuple[Status, int] | None:
        if not fault.from_header:
            return (fault.status, fault.code) if self._chosen(fault.percentage, None) else None
        code = _parse_number(headers.get(ABORT_HEADER))
        if code is None or code < 0 or code != int(code):
            return None
        chosen = self._chosen(fault.percentage, headers.get(ABORT_PERCENT_HEADER))
        return (fault.status, int(code)) if chosen else None

    def statistics(self) -> FaultStatistics:
        return FaultStatistics(self._delays, self._aborts, self._overflow, self._active)


def _parse_number(text: str | None) -> float | None:
    """A header's number, or None if absent or malformed (a bad header injects nothing)."""
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None
