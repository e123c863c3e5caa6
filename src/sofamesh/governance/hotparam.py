"""Hot-parameter limiting: a separate QPS limit for each value of one request parameter.

Semantics follow Sentinel's ``ParamFlowRule`` in QPS grade with the default
(reject) behaviour (``ParamFlowChecker.passDefaultLocalCheck``). Each value
(say, the user id in a header) has its own token bucket:

- capacity ``count + burst`` (``count`` and ``burstCount``); a per-value
  `overrides` entry replaces ``count`` for that value (``paramFlowItemList``),
  and a threshold of 0 rejects the value outright;
- a value seen for the first time starts full and spends one token;
- within `duration` seconds (``durationInSec``) of the bucket's last refill,
  calls spend tokens until none are left;
- once more than `duration` has passed, the bucket gains
  ``elapsed * count / duration`` tokens (capped at the capacity) and the
  refill time moves to now.

So no value passes more than ``count + burst`` calls in any `duration`, plus
the refill over longer spans. Values live in an LRU cache of `max_keys`
entries (Sentinel sizes its ``CacheMap`` the same way); an evicted value
starts full again, so the cache must be larger than the set of hot values.
The filter decides where the value comes from (`header`); this module only
sees the value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import cachetools

from sofamesh.governance.shadow import (
    EnforcementConfig,
    EnforcementStatistics,
    Enforcer,
    Verdict,
)


def _positive(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attr.name} must be a positive number, got {value}")


def _freeze(value: Mapping[str, int] | None) -> tuple[tuple[str, int], ...]:
    # Frozen and hashable like the rest of the config; the limiter builds a dict.
    items = tuple(sorted((str(k), int(n)) for k, n in (value or {}).items()))
    for key, n in items:
        if n < 0:
            raise ValueError(f"override for {key!r} must be >= 0, got {n}")
    return items


@attrs.frozen(kw_only=True)
class HotParamConfig:
    """Sentinel ``ParamFlowRule`` (QPS grade, default behaviour); times in seconds."""

    header: str = ""  # which request header carries the value (the filter reads it)
    count: int = attrs.field(validator=attrs.validators.ge(0))
    burst: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    duration: float = attrs.field(default=1.0, validator=_positive)
    overrides: tuple[tuple[str, int], ...] = attrs.field(default=(), converter=_freeze)
    max_keys: int = attrs.field(default=10_000, validator=attrs.validators.ge(1))
    enforcement: EnforcementConfig = attrs.field(factory=EnforcementConfig)


@attrs.frozen
class HotParamStatistics:
    tracked_values: int
    passed: int
    enforcement: EnforcementStatistics


class HotParamLimiter:
    """Token buckets per parameter value, in a bounded LRU cache."""

    __slots__ = ("_buckets", "_burst", "_count", "_duration", "_enforcer", "_overrides", "_passed")

    def __init__(self, config: HotParamConfig, rand: Callable[[], float] | None = None) -> None:
        self._count = config.count
        self._burst = config.burst
        self._duration = config.duration
        self._overrides = dict(config.overrides)
        self._enforcer = Enforcer(config.enforcement, rand)
        # value -> [tokens left, last refill time]; a list so updates allocate nothing.
        self._buckets: cachetools.LRUCache[str, list[float]] = cachetools.LRUCache(config.max_keys)
        self._passed = 0

    def try_acquire(self, value: str, now: float) -> Verdict:
        if not self._enforcer.sample():
            return Verdict.SKIP
        if self._take(value, now):
            self._passed += 1
            return Verdict.ADMIT
        return self._enforcer.reject()

    def _take(self, value: str, now: float) -> bool:
        count = self._overrides.get(value, self._count)
        if count == 0:
            return False
        capacity = count + self._burst
        bucket = self._buckets.get(value)
        if bucket is None:
            self._buckets[value] = [capacity - 1, now]
            return True
        tokens, last = bucket
        elapsed = now - last
        if elapsed > self._duration:
            added = math.floor(elapsed * count / self._duration)
            left = capacity - 1 if tokens + added > capacity else tokens + added - 1
            if left < 0:
                return False
            bucket[0], bucket[1] = left, now
            return True
        if tokens >= 1:
            bucket[0] = tokens - 1
            return True
        return False

    def statistics(self) -> HotParamStatistics:
        return HotParamStatistics(len(self._buckets), self._passed, self._enforcer.statistics())
