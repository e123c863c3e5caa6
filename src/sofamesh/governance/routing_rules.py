"""The rules document's routing and load-balancing sections (see `rules.py`)."""

from __future__ import annotations

from typing import Literal

import attrs

from sofamesh.endpoint import Endpoint
from sofamesh.governance.limits import RetryBudget
from sofamesh.governance.rule_fields import (
    RetryOn,
    StatusName,
    StrMap,
    lowercase,
    named_service,
    valid_regex,
)
from sofamesh.upstream.hashing import MaglevConfig, RingHashConfig
from sofamesh.upstream.slowstart import SlowStartConfig

# -- routing ------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class StringMatch:
    """Exactly one of `exact`, `prefix`, `regex` (a full match, as Envoy's `safe_regex`)."""

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    def __attrs_post_init__(self) -> None:
        if sum(x is not None for x in (self.exact, self.prefix, self.regex)) != 1:
            raise ValueError("give exactly one of exact, prefix, regex")
        if self.regex is not None:
            valid_regex(self.regex)


@attrs.frozen(kw_only=True)
class HeaderMatch:
    """A header condition: `exact`, `prefix`, `regex`, or `present` (true/false)."""

    name: str = attrs.field(converter=lowercase)
    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None
    present: bool | None = None

    def __attrs_post_init__(self) -> None:
        given = (self.exact, self.prefix, self.regex, self.present)
        if sum(x is not None for x in given) != 1:
            raise ValueError("give exactly one of exact, prefix, regex, present")
        if self.regex is not None:
            valid_regex(self.regex)


@attrs.frozen(kw_only=True)
class RouteMatch:
    """Every given condition must hold; nothing given matches every call of the service."""

    method: StringMatch | None = None
    headers: tuple[HeaderMatch, ...] = ()
    callers: tuple[str, ...] = ()  # caller apps (inv.caller); empty = any caller


@attrs.frozen(kw_only=True)
class Subset:
    """Endpoints selected by metadata; an empty field matches anything."""

    version: str = ""
    zone: str = ""
    tags: tuple[str, ...] = ()  # every one must be among the endpoint's tags
    meta: StrMap = attrs.field(factory=StrMap)

    def matches(self, ep: Endpoint) -> bool:
        if self.version and ep.version != self.version:
            return False
        if self.zone and ep.zone != self.zone:
            return False
        if self.tags and not ep.tags.issuperset(self.tags):
            return False
        return not self.meta or set(self.meta) <= set(ep.meta)

    def describe(self) -> str:
        parts = [f"version={self.version}"] if self.version else []
        parts += [f"zone={self.zone}"] if self.zone else []
        parts += [f"tag={t}" for t in self.tags] + [f"{k}={v}" for k, v in self.meta]
        return ",".join(parts) or "all"


@attrs.frozen(kw_only=True)
class WeightedSubset:
    subset: Subset = attrs.field(factory=Subset)
    weight: int = attrs.field(default=1, validator=attrs.validators.in_(range(0, 1_000_001)))


@attrs.frozen(kw_only=True)
class TagGroup:
    """Dubbo's dynamic tag: endpoints (host:port) that carry tag `name` whatever they publish."""

    name: str = attrs.field(validator=attrs.validators.min_len(1))
    addresses: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class TagRouting:
    """Dubbo's tag router: a request's tag selects the endpoints carrying it (filters/select.py)."""

    header: str = attrs.field(default="x-sofamesh-tag", converter=lowercase)
    force_header: str = attrs.field(default="x-sofamesh-force-tag", converter=lowercase)
    force: bool = False  # no fallback to untagged endpoints (Dubbo's rule-level `force`)
    groups: tuple[TagGroup, ...] = ()


@attrs.frozen(kw_only=True)
class Mirror:
    subset: Subset = attrs.field(factory=Subset)
    percentage: float = attrs.field(
        default=100.0, validator=[attrs.validators.ge(0.0), attrs.validators.le(100.0)]
    )


@attrs.frozen(kw_only=True)
class StaticResponse:
    """A response the mesh makes itself: a direct response, a fallback, a fault's abort body."""

    code: int = attrs.field(default=200, validator=attrs.validators.in_(range(0, 1000)))
    status: StatusName = "ok"
    headers: StrMap = attrs.field(factory=StrMap)
    body: str = ""


@attrs.frozen(kw_only=True)
class Backoff:
    """Envoy's retry back-off: full jitter over base * (2^n - 1), capped (default 10 x base)."""

    base_interval: float = attrs.field(default=0.025, validator=attrs.validators.gt(0.0))
    max_interval: float | None = None

    @property
    def cap(self) -> float:
        return self.max_interval if self.max_interval is not None else 10 * self.base_interval

    def __attrs_post_init__(self) -> None:
        if self.max_interval is not None and self.max_interval < self.base_interval:
            raise ValueError("max_interval must be >= base_interval")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """When and how often to try again; `attempts` counts the first try (gRPC's maxAttempts)."""

    attempts: int = attrs.field(default=2, validator=attrs.validators.in_(range(1, 11)))
    retry_on: tuple[RetryOn, ...] = ("connect_failure", "reset", "gateway_error")
    retriable_codes: tuple[int, ...] = ()  # protocol codes (HTTP status, Bolt/gRPC status)
    per_try_timeout: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0.0))
    )
    non_idempotent: bool = False  # HTTP: retry POST/PATCH after the request may have arrived
    backoff: Backoff = attrs.field(factory=Backoff)
    budget: RetryBudget | None = attrs.field(factory=RetryBudget)  # Envoy's; null: no budget


@attrs.frozen(kw_only=True)
class Route:
    """A routing rule of one service; the first matching route of the service wins."""

    service: str = attrs.field(validator=named_service)
    name: str = ""
    match: RouteMatch = attrs.field(factory=RouteMatch)
    split: tuple[WeightedSubset, ...] = ()
    tag: TagRouting | None = None
    subset_fallback: Literal["none", "any"] = "none"  # when the chosen subset has no endpoint
    mirror: Mirror | None = None
    direct_response: StaticResponse | None = None
    timeout: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0.0))
    )
    retry: RetryPolicy | None = None

    def __attrs_post_init__(self) -> None:
        if self.split and self.tag is not None:
            raise ValueError("a route takes split or tag, not both")
        if self.split and sum(w.weight for w in self.split) <= 0:
            raise ValueError("split weights must not all be 0")
        if self.direct_response is not None and (
            self.split or self.tag or self.mirror or self.retry
        ):
            raise ValueError("direct_response excludes split, tag, mirror and retry")


# -- load balancing ---------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class HashPolicy:
    """Consistent hashing on a request header: Envoy's RING_HASH or MAGLEV."""

    header: str = attrs.field(converter=lowercase, validator=attrs.validators.min_len(1))
    algorithm: Literal["ring_hash", "maglev"] = "ring_hash"
    min_ring_size: int = 1024
    max_ring_size: int = 1 << 20
    table_size: int = 65537

    def __attrs_post_init__(self) -> None:
        self.config()

    def config(self) -> RingHashConfig | MaglevConfig:
        if self.algorithm == "maglev":
            return MaglevConfig(table_size=self.table_size)
        return RingHashConfig(min_ring_size=self.min_ring_size, max_ring_size=self.max_ring_size)


@attrs.frozen(kw_only=True)
class ZoneAware:
    """Envoy zone-aware routing; `local_zone` defaults to this app's `metadata.zone`."""

    local_zone: str = ""
    min_cluster_size: int = attrs.field(default=6, validator=attrs.validators.ge(0))
    routing_enabled: float = attrs.field(
        default=100.0, validator=[attrs.validators.ge(0.0), attrs.validators.le(100.0)]
    )
    panic_threshold: float = attrs.field(
        default=50.0, validator=[attrs.validators.ge(0.0), attrs.validators.le(100.0)]
    )


@attrs.frozen(kw_only=True)
class Balancing:
    service: str = attrs.field(validator=named_service)
    hash: HashPolicy | None = None
    zone_aware: ZoneAware | None = None
    slow_start: SlowStartConfig | None = None
