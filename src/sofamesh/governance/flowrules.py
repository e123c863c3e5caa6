"""Which flow limiters apply to a call: rules keyed by service, method and caller app.

Resources are (service, method) as in `scope.py`. Within a resource the
`caller` of a rule follows Sentinel's ``limitApp``:

- ``"default"`` (`ANY_CALLER`): one limiter counting every caller together
  (Sentinel's cluster node);
- an app name: one limiter counting only that caller's calls (its origin node);
- ``"other"`` (`OTHER_CALLERS`): *each* caller not named by an app-specific
  rule of the same resource gets a limiter of its own, kept in a bounded LRU
  of callers. As in Sentinel, a call with no caller is not an "other" caller.

A call passes through every rule that applies (service-wide resource first,
then the method's; within one, "default" rules first, then the caller's), and
is admitted only if all admit. If one rejects, the admissions already made are
cancelled, so a rejected call is counted by no limiter -- Sentinel counts a
pass only after every slot has passed. Paced delays add up, as Sentinel's
controllers sleep one after another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import attrs
import cachetools

from sofamesh.governance.ratelimit import (
    FlowConfig,
    FlowLimiter,
    FlowStatistics,
    Pace,
    build_limiter,
)
from sofamesh.governance.scope import ScopedRules
from sofamesh.governance.shadow import Verdict

ANY_CALLER = "default"
OTHER_CALLERS = "other"


@attrs.frozen(kw_only=True)
class FlowRule:
    """One limit on one resource, for one set of callers."""

    service: str = attrs.field(validator=attrs.validators.min_len(1))
    method: str = ""  # "" service-wide, "*" each method on its own, or a method name
    caller: str = ANY_CALLER
    limit: FlowConfig


@attrs.frozen(slots=True)
class FlowPermit:
    """What `FlowRules.try_acquire` decided; hand it back to `release`."""

    verdict: Verdict
    delay: float = 0.0
    held: tuple[tuple[FlowLimiter, Pace], ...] = ()

    @property
    def admitted(self) -> bool:
        return self.verdict is not Verdict.REJECT


_NO_RULE = FlowPermit(Verdict.SKIP)
_REJECTED = FlowPermit(Verdict.REJECT)


class _ResourceFlow:
    """The limiters of one resource, split by caller."""

    def __init__(
        self,
        rules: tuple[FlowRule, ...],
        max_callers: int,
        rand: Callable[[], float] | None,
    ) -> None:
        self._rand = rand
        self._any = tuple(build_limiter(r.limit, rand) for r in rules if r.caller == ANY_CALLER)
        named: dict[str, list[FlowLimiter]] = {}
        for r in rules:
            if r.caller not in (ANY_CALLER, OTHER_CALLERS):
                named.setdefault(r.caller, []).append(build_limiter(r.limit, rand))
        self._named = {app: self._any + tuple(lims) for app, lims in named.items()}
        self._other = tuple(r.limit for r in rules if r.caller == OTHER_CALLERS)
        self._others: cachetools.LRUCache[str, tuple[FlowLimiter, ...]] = cachetools.LRUCache(
            max_callers
        )

    def for_caller(self, caller: str) -> tuple[FlowLimiter, ...]:
        found = self._named.get(caller)
        if found is not None:
            return found
        if not self._other or not caller:
            return self._any
        found = self._others.get(caller)
        if found is None:
            own = tuple(build_limiter(cfg, self._rand) for cfg in self._other)
            found = self._others[caller] = self._any + own
        return found

    def limiters(self) -> Iterator[tuple[str, FlowLimiter]]:
        """Every live limiter with the caller it counts ("default", an app, or an other caller)."""
        for lim in self._any:
            yield ANY_CALLER, lim
        for app, lims in self._named.items():
            for lim in lims[len(self._any) :]:
                yield app, lim
        for caller, lims in list(self._others.items()):
            for lim in lims[len(self._any) :]:
                yield caller, lim


class FlowRules:
    """Every flow rule of one configuration, with their limiters' state."""

    def __init__(
        self,
        rules: Iterable[FlowRule],
        *,
        max_methods: int = 10_000,
        max_callers: int = 10_000,
        rand: Callable[[], float] | None = None,
    ) -> None:
        grouped: dict[tuple[str, str], list[FlowRule]] = {}
        for rule in rules:
            grouped.setdefault((rule.service, rule.method), []).append(rule)
        self._scoped: ScopedRules[tuple[FlowRule, ...], _ResourceFlow] = ScopedRules(
            ((s, m, tuple(rs)) for (s, m), rs in grouped.items()),
            lambda rs: _ResourceFlow(rs, max_callers, rand),
            maxsize=max_methods,
        )

    def select(self, service: str, method: str, caller: str) -> list[FlowLimiter]:
        """The limiters a call must pass, in order."""
        out: list[FlowLimiter] = []
        for resource in self._scoped.lookup(service, method):
            out.extend(resource.for_caller(caller))
        return out

    def try_acquire(self, service: str, method: str, caller: str, now: float) -> FlowPermit:
        resources = self._scoped.lookup(service, method)
        if not resources:
            return _NO_RULE
        held: list[tuple[FlowLimiter, Pace]] = []
        delay = 0.0
        shadowed = False
        for resource in resources:
            for limiter in resource.for_caller(caller):
                pace = limiter.try_acquire(now)
                if not pace.admitted:
                    for lim, p in held:
                        lim.cancel(p, now)
                    return _REJECTED
                held.append((limiter, pace))
                delay += pace.delay
                shadowed = shadowed or pace.verdict is Verdict.SHADOW
        verdict = Verdict.SHADOW if shadowed else Verdict.ADMIT
        return FlowPermit(verdict, delay, tuple(held))

    def release(self, permit: FlowPermit) -> None:
        """The call admitted by `permit` finished (frees concurrency slots)."""
        for limiter, pace in permit.held:
            limiter.release(pace)

    def statistics(self, now: float) -> list[tuple[str, str, str, FlowStatistics]]:
        """(service, method, caller, statistics) per live limiter; method "" = service-wide."""
        return [
            (service, method, caller, limiter.statistics(now))
            for service, method, resource in self._scoped.instances()
            for caller, limiter in resource.limiters()
        ]

    def cancel(self, permit: FlowPermit, now: float) -> None:
        """The admitted call never ran: un-count it where a limiter can."""
        for limiter, pace in permit.held:
            limiter.cancel(pace, now)
