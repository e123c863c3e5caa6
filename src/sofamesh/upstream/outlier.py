"""Passive outlier ejection: consecutive failures take an endpoint out of rotation.

Semantics follow Envoy's outlier detection (``consecutive_5xx`` /
``consecutive_gateway_failure``):

- Every call's outcome is recorded against its endpoint. After
  `consecutive_failures` failures in a row the endpoint is *ejected*.
- An ejection lasts ``base_ejection_time * n`` where n is how many times the
  endpoint has been ejected (capped at `max_ejection_time`), so a flapping
  endpoint stays out longer each time. n decays by one for every
  `base_ejection_time` the endpoint spends back in rotation without ejection.
- At most `max_ejection_percent` of the endpoints are ejected at once, but, as
  in Envoy, at least one may always be ejected.
- Ejection is lifted lazily: `is_ejected(key, now)` returns False once the
  time is up; the endpoint's failure streak starts again from zero.

The detector is a pure state machine: it never reads a clock; callers pass `now`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import attrs

from sofamesh.upstream.settings import OutlierConfig as OutlierConfig  # the config holds it


@attrs.define
class HostState:
    """One endpoint's streak and ejections (`Cluster` resets a healthy host's streak itself)."""

    streak: int = 0
    times_ejected: int = 0
    ejected_until: float | None = None
    back_since: float = 0.0


@attrs.frozen
class HostOutlierStats:
    consecutive_failures: int
    times_ejected: int
    ejected_until: float | None


@attrs.frozen
class OutlierStats:
    ejections_total: int
    ejections_overflow: int  # ejections skipped because max_ejection_percent was reached
    ejected_now: int


class OutlierDetector:
    """Tracks failure streaks per endpoint key and decides ejections."""

    def __init__(self, config: OutlierConfig) -> None:
        self.config = config
        # By endpoint key; `Cluster.record` resets a healthy host's streak itself.
        self.hosts: dict[str, HostState] = {}
        self._ejections_total = 0
        self._overflow = 0
        # When the last ejection made so far ends: past it, no host is ejected, which
        # lets the balancing step skip per-host checks (the common case).
        self.ejections_end = -math.inf

    def set_hosts(self, keys: Iterable[str]) -> None:
        """Follow membership: new hosts start clean, departed ones are forgotten."""
        keys = set(keys)
        for gone in self.hosts.keys() - keys:
            del self.hosts[gone]
        for new in keys - self.hosts.keys():
            self.hosts[new] = HostState()

    def is_ejected(self, key: str, now: float) -> bool:
        host = self.hosts.get(key)
        if host is None or host.ejected_until is None:
            return False
        if now < host.ejected_until:
            return True
        host.ejected_until = None  # time served: back into rotation
        host.back_since = now
        host.streak = 0
        return False

    def record(self, key: str, failed: bool, now: float) -> bool:
        """Record one outcome; True if this outcome ejected the endpoint."""
        host = self.hosts.get(key)
        if host is None or not self.config.enabled:
            return False
        if not failed:
            host.streak = 0
            if host.times_ejected:  # _decay's own first test, without its call
                self._decay(host, now)
            return False
        host.streak += 1
        if host.streak < self.config.consecutive_failures or self.is_ejected(key, now):
            return False
        return self._eject(host, now)

    def _decay(self, host: HostState, now: float) -> None:
        if host.times_ejected and host.ejected_until is None:
            periods = int((now - host.back_since) // self.config.base_ejection_time)
            if periods > 0:
                host.times_ejected = max(0, host.times_ejected - periods)
                host.back_since = now

    def _eject(self, host: HostState, now: float) -> bool:
        if not self._room_for_one_more(now):
            self._overflow += 1
            host.streak = 0
            return False
        self._decay(host, now)
        host.times_ejected += 1
        cfg = self.config
        duration = min(cfg.base_ejection_time * host.times_ejected, cfg.max_ejection_time)
        host.ejected_until = now + duration
        self.ejections_end = max(self.ejections_end, host.ejected_until)
        host.streak = 0
        self._ejections_total += 1
        return True

    def _room_for_one_more(self, now: float) -> bool:
        ejected = sum(1 for k in self.hosts if self.is_ejected(k, now))
        if ejected == 0:
            return True  # Envoy: at least one host may always be ejected
        allowed = math.floor(len(self.hosts) * self.config.max_ejection_percent / 100)
        return ejected < allowed

    def host_stats(self, key: str) -> HostOutlierStats | None:
        h = self.hosts.get(key)
        if h is None:
            return None
        return HostOutlierStats(h.streak, h.times_ejected, h.ejected_until)

    def statistics(self, now: float) -> OutlierStats:
        ejected = sum(1 for k in self.hosts if self.is_ejected(k, now))
        return OutlierStats(self._ejections_total, self._overflow, ejected)
