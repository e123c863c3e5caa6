"""Slow start: ramp a new endpoint's weight up over a window (Envoy's ``slow_start_config``).

An endpoint that joins the cluster -- or that `restart` puts back, e.g. after
failing and then passing active health checks, as Envoy does -- is in slow
start for `window` seconds. Meanwhile its load-balancing weight is

    weight * max(min_weight_percent / 100, time_factor ** (1 / aggression))
    time_factor = max(seconds_since_start, 1) / window

so aggression 1 ramps linearly, a larger aggression ramps faster at first, and
the weight never falls below `min_weight_percent` (Envoy: 10%) of the
configured one. Envoy applies this to its round-robin and least-request
balancers; here any weighted balancer can ask `weight(endpoint, now)`.

Start times are kept per endpoint key and forgotten when the endpoint leaves
(`observe` with the new membership), so an endpoint that comes back starts
slow again. As Envoy notes, slow start only shifts traffic when some
endpoints are new and others are not: at a full redeploy every endpoint
ramps together.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import attrs

from sofamesh.endpoint import Endpoint


def _positive(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attr.name} must be a positive number, got {value}")


@attrs.frozen(kw_only=True)
class SlowStartConfig:
    window: float = attrs.field(validator=_positive)  # seconds (Envoy slow_start_window)
    aggression: float = attrs.field(default=1.0, validator=_positive)
    min_weight_percent: float = attrs.field(
        default=10.0, validator=[attrs.validators.ge(0.0), attrs.validators.le(100.0)]
    )
    max_endpoints: int = attrs.field(default=100_000, validator=attrs.validators.ge(1))


class SlowStart:
    """Tracks when each endpoint started and scales its weight while it warms."""

    def __init__(self, config: SlowStartConfig) -> None:
        self.config = config
        self._started: dict[str, float] = {}
        self._floor = config.min_weight_percent / 100.0
        self._exponent = 1.0 / config.aggression

    def observe(self, endpoints: Iterable[Endpoint], now: float) -> None:
        """Follow a new membership: newcomers start now, departed endpoints are forgotten."""
        started = {}
        for e in endpoints:
            started[e.key] = self._started.get(e.key, now)
            if len(started) >= self.config.max_endpoints:
                break  # a bound on memory; endpoints past it get full weight
        self._started = started

    def restart(self, endpoint: Endpoint, now: float) -> None:
        """Put an endpoint back into slow start (it just became healthy again)."""
        if endpoint.key in self._started:
            self._started[endpoint.key] = now

    def factor(self, endpoint: Endpoint, now: float) -> float:
        """The share of its weight an endpoint gets now, in [min_weight_percent/100, 1]."""
        start = self._started.get(endpoint.key)
        if start is None:
            return 1.0
        elapsed = now - start
        window = self.config.window
        if elapsed >= window:
            return 1.0
        time_factor = max(elapsed, 1.0) / window
        return min(1.0, max(self._floor, math.pow(time_factor, self._exponent)))

    def weight(self, endpoint: Endpoint, now: float) -> float:
        return endpoint.weight * self.factor(endpoint, now)

    def in_slow_start(self, endpoint: Endpoint, now: float) -> bool:
        start = self._started.get(endpoint.key)
        return start is not None and now - start < self.config.window
