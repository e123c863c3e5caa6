"""Upstream's settings the config model holds; each machine's module loads with its first use.

`policy.health_check`, `policy.registry`, `policy.success_rate`, `policy.outlier`
and `policy.balancer` are parsed at start with every config, whether or not a
cluster ever runs them; the health checker (`health.py`), the removal guard
(`removals.py`), the success-rate detector (`success_rate.py`), the outlier
detector (`outlier.py`) and the balancers (`balancers.py`) are imported by the
first cluster that needs them (`cluster_state.py`, with the first cluster), so
an idle sidecar holds only these classes and names. Each machine's module offers
its settings' class under its old name as well.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from sofamesh import protocols


def _above_zero(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attr.name} must be positive, got {value}")


# The names `policy.balancer` and `load_balancing` rules take: `balancers.FACTORIES`'s keys
# (a test holds the two equal).
BALANCERS = ("round_robin", "random", "weighted_random", "least_request", "ring_hash", "maglev")


@attrs.frozen
class OutlierConfig:
    """Defaults are Envoy's, except `max_ejection_percent` (Envoy: 10)."""

    enabled: bool = True
    consecutive_failures: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    base_ejection_time: float = attrs.field(default=30.0, validator=_above_zero)
    max_ejection_time: float = attrs.field(default=300.0, validator=_above_zero)
    max_ejection_percent: int = attrs.field(
        default=50, validator=[attrs.validators.ge(0), attrs.validators.le(100)]
    )


def _known_kind(_inst: object, attr: attrs.Attribute[Any], value: str) -> None:
    if value == protocols.TCP_PROBE:
        return  # the default: no protocol need be imported to know it
    kinds = protocols.health_kinds()
    if value not in kinds:
        raise ValueError(f"expected one of {list(kinds)}, got {value!r}")


@attrs.frozen
class HealthCheckConfig:
    """How to probe; names and defaults as in `health.py`'s table."""

    kind: str = attrs.field(default="tcp", validator=_known_kind)
    interval: float = attrs.field(default=5.0, validator=_above_zero)
    timeout: float = attrs.field(default=1.0, validator=_above_zero)
    jitter: float = attrs.field(
        default=0.1,
        validator=attrs.validators.and_(attrs.validators.ge(0.0), attrs.validators.le(1.0)),
    )
    unhealthy_threshold: int = attrs.field(default=3, validator=_above_zero)
    healthy_threshold: int = attrs.field(default=2, validator=_above_zero)
    path: str = "/health"  # http
    expected_statuses: tuple[int, int] = (200, 300)  # http: [low, high)
    max_response_bytes: int = attrs.field(default=64 * 1024, validator=_above_zero)


def _share(_inst: object, _attr: attrs.Attribute[Any], value: float) -> None:
    if not (math.isfinite(value) and 0 < value <= 1):
        raise ValueError(f"must be a share within (0, 1], got {value}")


@attrs.frozen
class RemovalConfig:
    """`policy.registry`: how much of a cluster one snapshot may remove before it is held."""

    # Held when the snapshot removes at least this share of the endpoints in force.
    hold_removal_share: float = attrs.field(default=1.0, validator=_share)


def _positive(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attr.name} must be a positive number, got {value}")


def _percent(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 100.0:
        raise ValueError(f"{attr.name} must be within 0..100, got {value}")


@attrs.frozen(kw_only=True)
class SuccessRateConfig:
    """Envoy's ``OutlierDetection`` success-rate fields and their defaults (times in seconds)."""

    interval: float = attrs.field(default=10.0, validator=_positive)
    base_ejection_time: float = attrs.field(default=30.0, validator=_positive)
    max_ejection_time: float = attrs.field(default=300.0, validator=_positive)
    max_ejection_percent: float = attrs.field(default=10.0, validator=_percent)
    enforcing_success_rate: float = attrs.field(default=100.0, validator=_percent)
    minimum_hosts: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    request_volume: int = attrs.field(default=100, validator=attrs.validators.ge(1))
    stdev_factor: float = attrs.field(default=1.9, validator=attrs.validators.ge(0.0))
