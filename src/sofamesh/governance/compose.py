"""The governance filters in chain order, for `Runtime` to slot into its chains.

Each kind of rule (`kinds.KINDS`) declares its filters with a slot; the chains
take them in slot order. Today that is, outbound (caller side), between
`StatsFilter` and `TimeoutFilter`::

    auth -> route -> degrade -> rate limits -> hot params -> limits -> breaker -> fault -> mirror
    ... TimeoutFilter -> retry_filter() (upstream's RetryFilter with route plans) -> BalanceFilter

Inbound (provider side), after `InboundDeadlineFilter`::

    auth -> degrade -> rate limits -> hot params -> fault -> the app

Every filter reads `governance.current` once per call, so rules change under
a running chain without rebuilding it; a filter with no rule for the call
costs a dict probe or two. With ``in_use_only`` the list holds only the
filters the rules in force use (each kind's `in_use`), which is what
`Runtime` composes (and composes again when the rules change): a mesh without
rules pays nothing for governance.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from sofamesh.chain import Filter
from sofamesh.clock import Clock
from sofamesh.config.model import PolicyConfig
from sofamesh.governance.holder import Governance, NoRulesYet
from sofamesh.stats import Stats
from sofamesh.upstream.retry import GatewayCodes, RetryFilter

if TYPE_CHECKING:
    from sofamesh.governance.filters.state import Holder
    from sofamesh.governance.kind import Compose, FilterSlot, Sleep


def outbound_filters(
    governance: Governance,
    clock: Clock,
    *,
    task_group: anyio.abc.TaskGroup | None = None,
    sleep: Sleep = anyio.sleep,
    rand: Callable[[], float] = random.random,
    in_use_only: bool = False,
) -> list[Filter]:
    """Caller-side filters, outermost first; mirroring needs a task group to send copies in."""
    if in_use_only and _no_rules(governance):
        return []  # the empty document uses no kind: none need load
    from sofamesh.governance.kind import Compose  # with the kinds, once there are rules

    ctx = Compose(governance, clock, "outbound", sleep, rand, task_group)
    return _filters(ctx, in_use_only)


def inbound_filters(
    governance: Governance,
    clock: Clock,
    *,
    sleep: Sleep = anyio.sleep,
    in_use_only: bool = False,
) -> list[Filter]:
    """Provider-side filters, outermost first (after the inbound deadline check)."""
    if in_use_only and _no_rules(governance):
        return []  # the empty document uses no kind: none need load
    from sofamesh.governance.kind import Compose  # with the kinds, once there are rules

    return _filters(Compose(governance, clock, "inbound", sleep), in_use_only)


def _filters(ctx: Compose, in_use_only: bool) -> list[Filter]:
    from sofamesh.governance.kinds import KINDS  # every kind's filters, with the first rules

    doc = ctx.governance.current.document
    slots: list[FilterSlot] = []
    for kind in KINDS:
        for slot in kind.filters:
            in_use = slot.in_use or kind.in_use
            if ctx.direction in slot.directions and (
                not in_use_only or in_use(doc, ctx.governance)
            ):
                slots.append(slot)
    slots.sort(key=lambda s: s.slot)
    return [f for f in (s.make(ctx) for s in slots) if f is not None]


def _no_rules(governance: Holder) -> bool:
    """The empty document's state is not built yet, and no fallback is registered in code."""
    return isinstance(governance.current, NoRulesYet) and not governance.code_fallbacks


def composition_key(governance: Governance) -> tuple[object, int]:
    """Changes whenever `in_use_only` may give another answer."""
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
    Only routes carry retry policies, so without routes the filter looks for no plan
    (the runtime composes again when the rules change).
    """
    by_route = None
    if not isinstance(governance.current, NoRulesYet) and governance.current.document.routes:
        from sofamesh.governance.filters.retry import RoutePlans  # with a route's first rules

        # Kept by route: a call's plan is one dict look-up, made once per route.
        by_route = RoutePlans(governance, rand)
    return RetryFilter(
        policy_for, stats, clock, gateway_codes=gateway_codes, plans_by_route=by_route, sleep=sleep
    )
