"""The rules document's enforcement sections: breakers, limits, faults, auth, fallbacks."""

from __future__ import annotations

from typing import Literal

import attrs

from sofamesh.governance.auth import Action, AuthConfig, AuthRule
from sofamesh.governance.breaker import BreakerConfig, Strategy
from sofamesh.governance.fault import AbortFault, DelayFault, FaultConfig
from sofamesh.governance.hotparam import HotParamConfig
from sofamesh.governance.limits import ResourceLimitsConfig
from sofamesh.governance.ratelimit import Behavior, FlowConfig, Grade
from sofamesh.governance.routing_rules import (
    StaticResponse,
)
from sofamesh.governance.rule_fields import (
    CountMap,
    Direction,
    HeaderPresence,
    StatusName,
    build_config,
    lowercase,
    named_service,
)
from sofamesh.governance.shadow import EnforcementConfig
from sofamesh.model import Status

# -- enforcement --------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class BreakerRule:
    """Sentinel's DegradeRule on the caller side; `method` "" = whole service, "*" = each."""

    service: str = attrs.field(validator=named_service)
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
        return build_config(BreakerConfig, self, strategy=Strategy(self.strategy))


@attrs.frozen(kw_only=True)
class RateLimitRule:
    """Sentinel's FlowRule; `caller` is its limitApp ("default", an app, or "other")."""

    service: str = attrs.field(validator=named_service)
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
        return build_config(
            FlowConfig, self, grade=Grade(self.grade), behavior=Behavior(self.behavior)
        )


@attrs.frozen(kw_only=True)
class HotParamRule:
    """Sentinel's ParamFlowRule: a QPS limit per value of a header or a query argument."""

    service: str = attrs.field(validator=named_service)
    method: str = ""
    name: str = ""
    direction: Direction = "inbound"
    header: str = attrs.field(default="", converter=lowercase)
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
        return build_config(HotParamConfig, self, overrides=dict(self.overrides))


@attrs.frozen(kw_only=True)
class Abort:
    status: StatusName = "app_error"
    code: int = 0  # the protocol's code (HTTP 503, ...); 0 = the status's usual code
    from_header: bool = False
    percentage: float = 100.0


@attrs.frozen(kw_only=True)
class FaultRule:
    """Envoy's fault filter for a service, method or route, optionally only on request."""

    service: str = attrs.field(validator=named_service)
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
    service: str = attrs.field(validator=named_service)
    method: str = ""
    name: str = ""
    allow: tuple[str, ...] = ()  # "app:<name>" or a bare app name; "tls:<id>" (a TLS identity)
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

    service: str = attrs.field(validator=named_service)
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

    service: str = attrs.field(validator=named_service)
    name: str = ""
    max_requests: int = 1024
    max_retries: int = 3
    enforcement: EnforcementConfig = attrs.field(factory=EnforcementConfig)

    def __attrs_post_init__(self) -> None:
        self.config()

    def config(self) -> ResourceLimitsConfig:
        return build_config(ResourceLimitsConfig, self)
