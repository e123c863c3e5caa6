"""The rules document: every governance rule as frozen data, validated with every problem's path.

One YAML/JSON document (schema and an example per rule in docs/configuration.md,
"Rules document") is parsed by `parse_rules` with `config.structure`, so an
invalid document is rejected whole, with one `ConfigError` listing each problem
as ``rate_limits[2].count: ...``. Each rule class mirrors the state machine
config it becomes (`BreakerRule.config() -> BreakerConfig`, ...): building that
config in ``__attrs_post_init__`` makes the state machine's own validation
report at the rule's path. Cross-rule checks (duplicates) run afterwards.

Rules are values: equal rules compare and hash equal, which is how a reload
recognises the rules that did not change and keeps their state
(`filters/state.py`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any, Literal, TypeVar

import attrs

from sofamesh.config.structure import ConfigError, structure
from sofamesh.endpoint import Endpoint
from sofamesh.governance.auth import Action, AuthConfig, AuthRule
from sofamesh.governance.breaker import BreakerConfig, Strategy
from sofamesh.governance.fault import AbortFault, DelayFault, FaultConfig
from sofamesh.governance.hashing import MaglevConfig, RingHashConfig
from sofamesh.governance.hotparam import HotParamConfig
from sofamesh.governance.limits import ResourceLimitsConfig, RetryBudget
from sofamesh.governance.ratelimit import Behavior, FlowConfig, Grade
from sofamesh.governance.shadow import EnforcementConfig
from sofamesh.governance.slowstart import SlowStartConfig
from sofamesh.model import Status

Direction = Literal["inbound", "outbound"]
StatusName = Literal[
    "ok",
    "app_error",
    "no_endpoint",
    "connect_failed",
    "upstream_reset",
    "timeout",
    "bad_request",
    "rate_limited",
    "circuit_open",
    "overloaded",
    "unauthorized",
    "unavailable",
    "internal",
]
RetryOn = Literal["connect_failure", "reset", "timeout", "app_error", "gateway_error"]
EACH_METHOD = "*"
T = TypeVar("T")


class StrMap(tuple[tuple[str, str], ...]):
    """A mapping of strings written as a YAML mapping, kept as sorted pairs (hashable)."""

    @classmethod
    def parse(cls, value: Any) -> StrMap:
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping, got {type(value).__name__}")
        bad = [
            k
            for k, v in value.items()
            if not isinstance(v, str | int | float) or isinstance(v, bool)
        ]
        if bad:
            raise ValueError(f"values must be strings, not for {', '.join(map(str, bad))}")
        return cls(sorted((str(k), str(v)) for k, v in value.items()))


class HeaderPresence(tuple[tuple[str, str | None], ...]):
    """Header name -> required value, or null for "present with any value" (lowercase names)."""

    @classmethod
    def parse(cls, value: Any) -> HeaderPresence:
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping, got {type(value).__name__}")
        return cls(
            sorted((str(k).lower(), None if v is None else str(v)) for k, v in value.items())
        )


class CountMap(tuple[tuple[str, int], ...]):
    """Parameter value -> threshold (hot parameter overrides)."""

    @classmethod
    def parse(cls, value: Any) -> CountMap:
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping, got {type(value).__name__}")
        for k, v in value.items():
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"override for {k!r} must be an integer >= 0, got {v!r}")
        return cls(sorted((str(k), int(v)) for k, v in value.items()))


def _build(target: type[T], spec: object, **converted: Any) -> T:
    """A state machine's config from the rule fields of the same names, plus `converted` ones."""
    names = {f.name for f in attrs.fields(target)} - converted.keys()  # type: ignore[arg-type]
    return target(**{n: getattr(spec, n) for n in names if hasattr(spec, n)}, **converted)


def _lower(value: str) -> str:
    return value.lower()


def _service(_inst: object, _attr: attrs.Attribute[Any], value: str) -> None:
    if not value:
        raise ValueError("must name a service")


def _compile(pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as e:
        raise ValueError(f"invalid regex {pattern!r}: {e}") from None


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
            _compile(self.regex)


@attrs.frozen(kw_only=True)
class HeaderMatch:
    """A header condition: `exact`, `prefix`, `regex`, or `present` (true/false)."""

    name: str = attrs.field(converter=_lower)
    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None
    present: bool | None = None

    def __attrs_post_init__(self) -> None:
        given = (self.exact, self.prefix, self.regex, self.present)
        if sum(x is not None for x in given) != 1:
            raise ValueError("give exactly one of exact, prefix, regex, present")
        if self.regex is not None:
            _compile(self.regex)


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

    header: str = attrs.field(default="x-sofamesh-tag", converter=_lower)
    force_header: str = attrs.field(default="x-sofamesh-force-tag", converter=_lower)
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

    service: str = attrs.field(validator=_service)
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

    header: str = attrs.field(converter=_lower, validator=attrs.validators.min_len(1))
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
    service: str = attrs.field(validator=_service)
    hash: HashPolicy | None = None
    zone_aware: ZoneAware | None = None
    slow_start: SlowStartConfig | None = None


# -- enforcement --------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class BreakerRule:
    """Sentinel's DegradeRule on the caller side; `method` "" = whole service, "*" = each."""

    service: str = attrs.field(validator=_service)
    method: str = ""
    name: str = ""
    strategy: Literal["slow_request_ratio", "error_ratio", "error_count"] = "error_ratio"
    threshold: float = 0.5
    max_response_time: float | None = None
    min_request_count: int = 5
    recovery_timeout: float = 5.0
    stat_interval: float = 1.0
    buckets: int = 10
    half_open_probes: int = 1
    enforcement: EnforcementConfig = attrs.field(factory=EnforcementConfig)

    def __attrs_post_init__(self) -> None:
        self.config()

    def config(self) -> BreakerConfig:
        return _build(BreakerConfig, self, strategy=Strategy(self.strategy))


@attrs.frozen(kw_only=True)
class RateLimitRule:
    """Sentinel's FlowRule; `caller` is its limitApp ("default", an app, or "other")."""

    service: str = attrs.field(validator=_service)
    method: str = ""
    caller: str = "default"
    name: str = ""
    direction: Direction = "inbound"
    count: float
    grade: Literal["qps", "concurrency"] = "qps"
    behavior: Literal["reject", "warm_up", "pacing", "warm_up_pacing"] = "reject"
    warm_up_period: float = 10.0
    cold_factor: int = 3
    max_queueing_time: float = 0.5
    enforcement: EnforcementConfig = attrs.field(factory=EnforcementConfig)

    def __attrs_post_init__(self) -> None:
        self.config()

    def config(self) -> FlowConfig:
        return _build(FlowConfig, self, grade=Grade(self.grade), behavior=Behavior(self.behavior))


@attrs.frozen(kw_only=True)
class HotParamRule:
    """Sentinel's ParamFlowRule: a QPS limit per value of a header or a query argument."""

    service: str = attrs.field(validator=_service)
    method: str = ""
    name: str = ""
    direction: Direction = "inbound"
    header: str = attrs.field(default="", converter=_lower)
    query: str = ""
    count: int
    burst: int = 0
    duration: float = 1.0
    overrides: CountMap = attrs.field(factory=CountMap)
    max_keys: int = 10_000
    enforcement: EnforcementConfig = attrs.field(factory=EnforcementConfig)

    def __attrs_post_init__(self) -> None:
        if bool(self.header) == bool(self.query):
            raise ValueError("give exactly one of header, query")
        self.config()

    def config(self) -> HotParamConfig:
        return _build(HotParamConfig, self, overrides=dict(self.overrides))


@attrs.frozen(kw_only=True)
class Abort:
    status: StatusName = "app_error"
    code: int = 0  # the protocol's code (HTTP 503, ...); 0 = the status's usual code
    from_header: bool = False
    percentage: float = 100.0


@attrs.frozen(kw_only=True)
class FaultRule:
    """Envoy's fault filter for a service, method or route, optionally only on request."""

    service: str = attrs.field(validator=_service)
    method: str = ""
    route: str = ""  # only calls that took this route (outbound)
    name: str = ""
    direction: Direction = "outbound"
    delay: DelayFault | None = None
    abort: Abort | None = None
    headers: HeaderPresence = attrs.field(factory=HeaderPresence)
    max_active_faults: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.delay is None and self.abort is None:
            raise ValueError("give delay, abort or both")
        self.config()

    def config(self) -> FaultConfig:
        abort = self.abort
        return FaultConfig(
            delay=self.delay,
            abort=None
            if abort is None
            else AbortFault(
                status=Status(abort.status),
                code=abort.code,
                from_header=abort.from_header,
                percentage=abort.percentage,
            ),
            match_headers=dict(self.headers),
            max_active_faults=self.max_active_faults,
        )


@attrs.frozen(kw_only=True)
class AuthRuleSpec:
    service: str = attrs.field(validator=_service)
    method: str = ""
    name: str = ""
    allow: tuple[str, ...] = ()  # "app:<name>" or a bare app name; "tls:<id>" later
    deny: tuple[str, ...] = ()
    default: Literal["allow", "deny"] | None = None  # None: deny with an allow list, else allow


@attrs.frozen(kw_only=True)
class AuthPolicy:
    default: Literal["allow", "deny"] = "allow"  # for services no rule names
    enforcement: EnforcementConfig = attrs.field(factory=EnforcementConfig)
    rules: tuple[AuthRuleSpec, ...] = ()

    def __attrs_post_init__(self) -> None:
        self.config()

    def config(self) -> AuthConfig:
        rules = tuple(
            AuthRule(
                service=r.service,
                method=r.method,
                allow=r.allow,
                deny=r.deny,
                default=None if r.default is None else Action(r.default),
            )
            for r in self.rules
        )
        return AuthConfig(
            rules=rules,  # type: ignore[arg-type]  # attrs' converter=tuple confuses mypy
            default=Action(self.default),
            enforcement=self.enforcement,
        )


@attrs.frozen(kw_only=True)
class AuthSection:
    inbound: AuthPolicy | None = None
    outbound: AuthPolicy | None = None


@attrs.frozen(kw_only=True)
class FallbackRule:
    """Degradation: answer instead of the provider on a rejection, or always (`force`)."""

    service: str = attrs.field(validator=_service)
    method: str = ""
    name: str = ""
    direction: Direction = "outbound"
    when: tuple[StatusName, ...] = ("rate_limited", "circuit_open", "overloaded")
    force: bool = False  # manual degradation: fallback only, the provider is not called
    response: StaticResponse | None = None  # None: only a fallback registered in code answers
    enforcement: EnforcementConfig = attrs.field(factory=EnforcementConfig)  # for `force`


@attrs.frozen(kw_only=True)
class ResourceLimitRule:
    """Envoy's cluster circuit_breakers.thresholds for calls to one service (caller side)."""

    service: str = attrs.field(validator=_service)
    name: str = ""
    max_requests: int = 1024
    max_retries: int = 3
    enforcement: EnforcementConfig = attrs.field(factory=EnforcementConfig)

    def __attrs_post_init__(self) -> None:
        self.config()

    def config(self) -> ResourceLimitsConfig:
        return _build(ResourceLimitsConfig, self)


@attrs.frozen(kw_only=True)
class RulesDocument:
    version: str = ""  # shown in /config_dump; empty = a hash of the content
    routes: tuple[Route, ...] = ()
    load_balancing: tuple[Balancing, ...] = ()
    breakers: tuple[BreakerRule, ...] = ()
    rate_limits: tuple[RateLimitRule, ...] = ()
    hot_params: tuple[HotParamRule, ...] = ()
    faults: tuple[FaultRule, ...] = ()
    auth: AuthSection = attrs.field(factory=AuthSection)
    fallbacks: tuple[FallbackRule, ...] = ()
    resource_limits: tuple[ResourceLimitRule, ...] = ()


EMPTY = RulesDocument(version="empty")


def parse_rules(data: Any) -> RulesDocument:
    """Validate plain data into a `RulesDocument`; `ConfigError` lists every problem by path."""
    if data is None:
        data = {}
    doc = structure(RulesDocument, data)
    problems = list(_cross_checks(doc))
    if problems:
        raise ConfigError(problems)
    if not doc.version:
        doc = attrs.evolve(doc, version=content_version(data))
    return doc


def content_version(data: Any) -> str:
    """A short, stable hash of the document's content (the version when none is given)."""
    text = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:12]


def rule_name(kind: str, index: int, given: str) -> str:
    """A rule's display name: its own, else its place in the document (``rate_limits[2]``)."""
    return given or f"{kind}[{index}]"


def _cross_checks(doc: RulesDocument) -> Iterator[str]:
    yield from _unique("routes", [(r.name,) if r.name else None for r in doc.routes], "name")
    yield from _unique(
        "breakers", [(r.service, r.method) for r in doc.breakers], "service and method"
    )
    yield from _unique("load_balancing", [(b.service,) for b in doc.load_balancing], "service")
    yield from _unique(
        "fallbacks",
        [(f.service, f.method, f.direction) for f in doc.fallbacks],
        "service, method and direction",
    )
    yield from _unique("resource_limits", [(r.service,) for r in doc.resource_limits], "service")
    routes = {r.name for r in doc.routes if r.name}
    for i, f in enumerate(doc.faults):
        if f.route and f.route not in routes:
            yield f"faults[{i}].route: no route is named {f.route!r}"
    names: dict[str, str] = {}
    for kind, rules in _named(doc):
        for i, r in enumerate(rules):
            if r.name and names.setdefault(r.name, f"{kind}[{i}]") != f"{kind}[{i}]":
                yield f"{kind}[{i}].name: {r.name!r} is already used by {names[r.name]}"


def _named(doc: RulesDocument) -> Iterator[tuple[str, tuple[Any, ...]]]:
    yield "breakers", doc.breakers
    yield "rate_limits", doc.rate_limits
    yield "hot_params", doc.hot_params
    yield "faults", doc.faults
    yield "fallbacks", doc.fallbacks
    yield "resource_limits", doc.resource_limits


def _unique(kind: str, keys: list[tuple[str, ...] | None], what: str) -> Iterator[str]:
    seen: dict[tuple[str, ...], int] = {}
    for i, key in enumerate(keys):
        if key is None:
            continue
        if key in seen:
            yield f"{kind}[{i}]: same {what} as {kind}[{seen[key]}]: {', '.join(map(repr, key))}"
        seen.setdefault(key, i)
