"""The governance filters in chain order, for `Runtime` to slot into its chains.

Outbound (caller side), between `StatsFilter` and `TimeoutFilter`::

    auth -> route -> degrade -> rate limits -> hot params -> limits -> breaker -> fault -> mirror
    ... TimeoutFilter -> retry_filter() (upstream's RetryFilter with route plans) -> BalanceFilter

Inbound (provider side), after `InboundDeadlineFilter`::

    auth -> degrade -> rate limits -> hot params -> fault -> the app

Every filter reads `governance.current` once per call, so rules change under
a running chain without rebuilding it; a filter with no rule for the call
costs a dict probe or two. `needed(...)` trims the list to the filters the
rules in force use, which is what `Runtime` composes (and composes again when
the rules change): a mesh without rules pays nothing for governance.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc

from sofamesh.chain import Filter
from sofamesh.clock import Clock
from sofamesh.config.model import PolicyConfig
from sofamesh.governance.filters.auth import AuthFilter
from sofamesh.governance.filters.breaker import BreakerFilter
from sofamesh.governance.filters.degrade import DegradeFilter
from sofamesh.governance.filters.fault import FaultFilter
from sofamesh.governance.filters.flow import FlowFilter
from sofamesh.governance.filters.hotparam import HotParamFilter
from sofamesh.governance.filters.limits import LimitsFilter
from sofamesh.governance.filters.mirror import MirrorFilter
from sofamesh.governance.filters.retry import RoutePlans
from sofamesh.governance.filters.route import RouteFilter
from sofamesh.governance.source import Governance
from sofamesh.stats import Stats
from sofamesh.upstream.retry import GatewayCodes, RetryFilter

Sleep = Callable[[float], Awaitable[None]]


def outbound_filters(
    governance: Governance,
    clock: Clock,
    *,
    task_group: anyio.abc.TaskGroup | None = None,
    sleep: Sleep = anyio.sleep,
    rand: Callable[[], float] = random.random,
) -> list[Filter]:
    """Caller-side filters, outermost first; mirroring needs a task group to send copies in."""
    g = governance
    filters: list[Filter] = [
        AuthFilter(g, "outbound"),  # this app's own egress policy, before anything is spent
        RouteFilter(g, clock),  # direct response, route deadline, the target for balancing/retry
        DegradeFilter(g, "outbound"),  # a fallback answers when a rule below rejects
        FlowFilter(g, clock, "outbound", sleep=sleep),  # QPS, warm-up, pacing, concurrency
        HotParamFilter(g, clock, "outbound"),  # per header/argument value
        LimitsFilter(g),  # calls in flight per service, before the breaker counts them
        BreakerFilter(g, clock),  # sees the outcome after retries, as the caller does
        FaultFilter(g, clock, "outbound", sleep=sleep),  # inside the breaker: faults trip it
    ]
    if task_group is not None:
        filters.append(MirrorFilter(task_group, rand=rand))  # copies skip the caller's rules
    return filters


def needed(governance: Governance, filters: list[Filter]) -> list[Filter]:
    """The filters that have something to do under the rules now in force."""
    doc = governance.current.document
    uses: dict[type, bool] = {
        AuthFilter: doc.auth.inbound is not None or doc.auth.outbound is not None,
        RouteFilter: bool(doc.routes or doc.load_balancing),
        DegradeFilter: bool(doc.fallbacks or governance.code_fallbacks),
        FlowFilter: bool(doc.rate_limits),
        HotParamFilter: bool(doc.hot_params),
        LimitsFilter: bool(doc.resource_limits),
        BreakerFilter: bool(doc.breakers),
        FaultFilter: bool(doc.faults),
        MirrorFilter: bool(doc.routes),
    }
    return [f for f in filters if uses.get(type(f), True)]


def composition_key(governance: Governance) -> tuple[object, int]:
    """Changes whenever `needed` may give another answer."""
    return governance.current, len(governance.code_fallbacks)


def retry_filter(
    governance: Governance,
    policy_for: Callable[[str], PolicyConfig],
    stats: Stats,
    clock: Clock,
    *,
    gateway_codes: GatewayCodes,
    sleep: Sleep = anyio.sleep,
    rand: Callable[[], float] = random.random,
) -> Filter:
    """The retry filter, with the retry policies of the routes in `governance`.

    `gateway_codes(protocol)`: the codes `retry_on: gateway_error` retries (the runtime's).
    """
    plans = RoutePlans(governance, rand)
    return RetryFilter(
        policy_for, stats, clock, gateway_codes=gateway_codes, plans=plans, sleep=sleep
    )


def inbound_filters(
    governance: Governance, clock: Clock, *, sleep: Sleep = anyio.sleep
) -> list[Filter]:
    """Provider-side filters, outermost first (after the inbound deadline check)."""
    g = governance
    return [
        AuthFilter(g, "inbound"),  # who may call at all
        DegradeFilter(g, "inbound"),  # a static answer when this side's limits reject
        FlowFilter(g, clock, "inbound", sleep=sleep),
        HotParamFilter(g, clock, "inbound"),
        FaultFilter(g, clock, "inbound", sleep=sleep),
    ]
