"""Outlier detection by success rate: Envoy's ``success_rate`` ejection, evaluated per interval.

Where `outlier.py` reacts to failures in a row, this detector compares each
endpoint with its peers once per `interval` (Envoy's ``interval``, 10 s):

- Every outcome is counted against its endpoint in the current interval.
- At the end of an interval, endpoints with at least `request_volume` calls
  in it (``success_rate_request_volume``, 100) are considered. If there are at
  least `minimum_hosts` of them (``success_rate_minimum_hosts``, 5), their
  success rates give a mean and a (population) standard deviation, and every
  considered endpoint whose rate is below ``mean - stdev_factor * stdev``
  (``success_rate_stdev_factor``, 1900/1000 = 1.9) is ejected -- each with
  probability `enforcing_success_rate` percent (100), and only while fewer
  than `max_ejection_percent` (10) of the endpoints are ejected, though one
  always may be, as in Envoy.
- An ejection lasts ``base_ejection_time * n`` (n = times ejected, capped by
  `max_ejection_time`), and is lifted at the first evaluation after it ends;
  each `base_ejection_time` an endpoint then stays in lowers n by one (Envoy's
  ejection back-off, ``checkHostForUneject``).
- Counts restart at every interval: a rate describes one interval only.

The detector never reads a clock: `record(key, success, now)` and
`tick(now)` take `now`; `tick` runs the evaluations whose intervals have
ended (several missed intervals count as one) and returns the endpoints it
ejected, so a caller can log them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable

import attrs

from sofamesh.upstream.settings import SuccessRateConfig as SuccessRateConfig


@attrs.define
class _Host:
    calls: int = 0
    successes: int = 0
    times_ejected: int = 0
    ejected_until: float | None = None
    back_since: float = 0.0  # when the last ejection was lifted


@attrs.frozen
class SuccessRateStatistics:
    evaluations: int
    ejections_total: int
    ejected_now: int
    last_mean: float | None  # of the last evaluation that had enough endpoints
    last_threshold: float | None


class SuccessRateDetector:
    """Success-rate ejection over one cluster's endpoints (keyed by `Endpoint.key`)."""

    def __init__(self, config: SuccessRateConfig, rand: Callable[[], float] | None = None) -> None:
        self.config = config
        self._rand = rand or random.random
        self._hosts: dict[str, _Host] = {}
        self._next_evaluation: float | None = None
        self._evaluations = 0
        self._ejections = 0
        self._mean: float | None = None
        self._threshold: float | None = None

    def set_hosts(self, keys: Iterable[str]) -> None:
        """Follow membership: newcomers start clean, departed endpoints are forgotten."""
        keys = set(keys)
        self._hosts = {k: self._hosts.get(k) or _Host() for k in keys}

    def record(self, key: str, success: bool, now: float) -> None:
        self.tick(now)
        host = self._hosts.get(key)
        if host is not None:
            host.calls += 1
            host.successes += success

    def is_ejected(self, key: str, now: float) -> bool:
        self.tick(now)
        host = self._hosts.get(key)
        return host is not None and host.ejected_until is not None

    def tick(self, now: float) -> list[str]:
        """Evaluate if an interval has ended; the keys ejected by this evaluation."""
        interval = self.config.interval
        if self._next_evaluation is None:
            self._next_evaluation = now + interval
            return []
        if now < self._next_evaluation:
            return []
        missed = (now - self._next_evaluation) // interval
        self._next_evaluation += (missed + 1) * interval
        return self._evaluate(now)

    def _evaluate(self, now: float) -> list[str]:
        self._evaluations += 1
        base = self.config.base_ejection_time
        for host in self._hosts.values():
            if host.ejected_until is not None and now >= host.ejected_until:
                host.ejected_until, host.back_since = None, now  # time served
            elif (
                host.ejected_until is None and host.times_ejected and now - host.back_since >= base
            ):
                host.times_ejected -= 1  # back in long enough: the next ejection is shorter
                host.back_since = now
        ejected = self._outliers(now)
        for host in self._hosts.values():
            host.calls = host.successes = 0
        return ejected

    def _outliers(self, now: float) -> list[str]:
        cfg = self.config
        rates = {
            k: h.successes / h.calls
            for k, h in self._hosts.items()
            if h.calls >= cfg.request_volume and h.ejected_until is None
        }
        if len(rates) < cfg.minimum_hosts:
            return []
        mean = sum(rates.values()) / len(rates)
        stdev = math.sqrt(sum((r - mean) ** 2 for r in rates.values()) / len(rates))
        threshold = mean - cfg.stdev_factor * stdev
        self._mean, self._threshold = mean, threshold
        out = []
        for key, rate in sorted(rates.items(), key=lambda kv: (kv[1], kv[0])):  # worst first
            if rate < threshold and self._enforced() and self._room():
                self._eject(self._hosts[key], now)
                out.append(key)
        return out

    def _enforced(self) -> bool:
        share = self.config.enforcing_success_rate
        return share >= 100.0 or (share > 0 and self._rand() * 100.0 < share)

    def _room(self) -> bool:
        ejected = sum(1 for h in self._hosts.values() if h.ejected_until is not None)
        if ejected == 0:
            return True  # Envoy: at least one endpoint may always be ejected
        return ejected < math.floor(len(self._hosts) * self.config.max_ejection_percent / 100)

    def _eject(self, host: _Host, now: float) -> None:
        cfg = self.config
        host.times_ejected += 1
        duration = min(cfg.base_ejection_time * host.times_ejected, cfg.max_ejection_time)
        host.ejected_until = now + duration
        self._ejections += 1

    def statistics(self) -> SuccessRateStatistics:
        ejected = sum(1 for h in self._hosts.values() if h.ejected_until is not None)
        return SuccessRateStatistics(
            self._evaluations, self._ejections, ejected, self._mean, self._threshold
        )
