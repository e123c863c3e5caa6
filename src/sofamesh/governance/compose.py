"""The governance filters in chain order, for `Runtime` to slot into its chains.

Outbound (caller side), between `StatsFilter` and `TimeoutFilter`::

    auth -> route -> degrade -> rate limits -> hot params -> limits -> breaker -> fault -> mirror
    ... TimeoutFilter -> retry_filter() (in place of ConnectRetryFilter) -> BalanceFilter

Inbound (provider side), after `InboundDeadlineFilter`::

    auth -> degrade -> rate limits -> hot params -> fault -> the app

Every filter reads `governance.current` once per call, so rules change under
a running chain without rebuilding it; a filter with no rule for the call
costs a dict probe or two.
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
from sofamesh.governance.filters.retry import RetryFilter
from sofamesh.governance.filters.route import RouteFilter
from sofamesh.governance.source import Governance
from sofamesh.stats import Stats

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


def retry_filter(
    governance: Governance,
    policy_for: Callable[[str], PolicyConfig],
    stats: Stats,
    clock: Clock,
    *,
    sleep: Sleep = anyio.sleep,
    rand: Callable[[], float] = random.random,
) -> Filter:
    """Replaces `ConnectRetryFilter` (same place, same behaviour without a route retry policy)."""
    return RetryFilter(governance, policy_for, stats, clock, sleep=sleep, rand=rand)


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
