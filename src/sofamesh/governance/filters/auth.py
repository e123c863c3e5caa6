"""Service authentication: allow and deny lists of caller apps per service and method.

The decision is `governance/auth.py`'s (deny wins, then the most specific
rule, then its default, then the policy's default); a denial answers
`Status.UNAUTHORIZED` (HTTP 403) naming the rule and the reason. The caller:
on a mutual-TLS hop, the peer certificate's SPIFFE ID (`inv.peer`, matched by
``tls:spiffe://...``) and the app it names (`inv.caller`, matched by
``app:<name>``), whatever the request declared; on a plaintext hop, the app
the request declares (``x-sofamesh-caller``, vouched for by the caller's
sidecar). Each direction has its own policy (`auth.inbound`, `auth.outbound`);
no policy, no check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from typing import TYPE_CHECKING, Any

import attrs

from sofamesh.chain import Handler, completed
from sofamesh.governance.auth import Authorizer, AuthRule, Reason, Subject
from sofamesh.governance.enforcement_rules import AuthPolicy
from sofamesh.governance.filters.keyed import BoundedDict, aliases
from sofamesh.governance.kind import DIRECTIONS, Build, FilterSlot, RuleKind
from sofamesh.governance.rules import rule_name
from sofamesh.governance.shadow import EnforcementConfig, Enforcer, Verdict
from sofamesh.model import Invocation, Result, Status

if TYPE_CHECKING:
    from sofamesh.governance.filters.state import Holder


Decision = tuple[bool, str, str, list[int]]  # allowed, deciding rule, reason, its counts


class AuthLeaf:
    """One direction's policy: cached decisions, counted per deciding rule.

    A decision depends only on (caller, service, method) and the policy, so it
    is made once per key (by an authorizer that always enforces) and cached;
    the policy's shadow mode and shares are applied per call by `enforcer`.
    """

    def __init__(self, policy: AuthPolicy, direction: str, rand: Callable[[], float] | None):
        config = policy.config()
        self.direction = direction
        self._decider = Authorizer(attrs.evolve(config, enforcement=EnforcementConfig()))
        self.enforcer = Enforcer(policy.enforcement, rand)
        prefix = f"auth.{direction}.rules"
        self._names = {
            (r.service, r.method): rule_name(prefix, i, r.name) for i, r in enumerate(policy.rules)
        }
        self._service = {r.service: r for r in config.rules if not r.method}
        self._method = {(r.service, r.method): r for r in config.rules if r.method}
        self._canonical = {a: r.service for r in config.rules for a in aliases(r.service)}
        # Read by the filter itself for the common allowed call (`AuthFilter.bind`).
        self.decisions: BoundedDict[tuple[str, str, str, str], Decision] = BoundedDict(10_000)
        self.counts: dict[str, list[int]] = {}  # rule -> [allowed, denied]

    def check(self, inv: Invocation) -> Result | None:
        """None to let the call through, else the denial."""
        key = (inv.caller, inv.peer, inv.service, inv.method)
        decision = self.decisions.get(key)
        if decision is None:
            decision = self.decisions.put(key, self._decide(*key))
        enforcer = self.enforcer
        if not (enforcer.always or enforcer.sample()):
            return None
        allowed, name, reason, counts = decision
        if allowed:
            counts[0] += 1
            return None
        counts[1] += 1
        if self.enforcer.reject() is Verdict.SHADOW:
            return None
        who = f"caller {inv.peer or inv.caller!r}" if inv.caller else "an anonymous caller"
        return Result.failure(
            Status.UNAUTHORIZED,
            f"{inv.service}: {who} may not call {inv.method or 'the service'} "
            f"(rule {name}: {reason})",
        )

    def _decide(self, caller: str, peer: str, service: str, method: str) -> Decision:
        service = self._canonical.get(service, service)
        subject = Subject(app=caller, tls_identity=peer)
        decision = self._decider.check(subject, service, method)
        rule = self._deciding_rule(subject, service, method, decision.reason)
        name = f"auth.{self.direction}.default"
        if rule is not None:
            name = self._names[(rule.service, rule.method)]
        counts = self.counts.setdefault(name, [0, 0])
        return decision.admitted, name, decision.reason.value.replace("_", " "), counts

    def _deciding_rule(
        self, subject: Subject, service: str, method: str, reason: Reason
    ) -> AuthRule | None:
        svc = self._service.get(service)
        meth = self._method.get((service, method))
        if reason is Reason.DENY_LIST and svc is not None and svc.deny & set(subject.principals):
            return svc
        return meth if meth is not None else svc

    def describe(self) -> list[dict[str, Any]]:
        st = self.enforcer.statistics()
        rows: list[dict[str, Any]] = [
            {"rule": name, "direction": self.direction, "allowed": a, "denied": d}
            for name, (a, d) in sorted(self.counts.items())
        ]
        return [
            *rows,
            {
                "rule": f"auth.{self.direction}",
                "direction": self.direction,
                "allowed": sum(r["allowed"] for r in rows),
                "denied": sum(r["denied"] for r in rows),
                "rejected": st.rejected,
                "shadowed": st.shadowed,
                "skipped": st.skipped,
            },
        ]


class AuthFilter:
    def __init__(self, holder: Holder, direction: str) -> None:
        self._holder = holder
        # The side read as an attribute in the handler: a dotted `attrgetter` is two
        # look-ups by name in C, dearer than two specialised attribute reads.
        self._outbound = direction == "outbound"

    def invoke(self, inv: Invocation, call_next: Handler) -> Awaitable[Result]:
        return self.bind(call_next)(inv)

    def bind(self, call_next: Handler) -> Handler:
        holder, outbound = self._holder, self._outbound

        def authorize(inv: Invocation) -> Awaitable[Result]:
            # Acts on the way down only: no coroutine frame of its own on the allowed path.
            state = holder.current
            auth: AuthLeaf | None = (state.outbound if outbound else state.inbound).auth
            if auth is not None:
                decision = auth.decisions.get((inv.caller, inv.peer, inv.service, inv.method))
                if decision is not None and decision[0] and auth.enforcer.always:
                    decision[3][0] += 1  # `check`'s common answer, without its call
                else:
                    denied = auth.check(inv)
                    if denied is not None:
                        return completed(denied)
            return call_next(inv)

        return authorize


def _build(b: Build) -> AuthLeaf | None:
    policy = getattr(b.document.auth, b.direction)
    if policy is None:
        return None
    key: Hashable = (b.direction, policy)
    return b.carries["auth"].take(key, partial(AuthLeaf, policy, b.direction, b.options.rand))


KIND = RuleKind(
    name="auth",
    sections=("auth",),
    carries=("auth",),
    build=_build,
    snapshot=lambda sides, now: {
        "auth": [row for side in sides if side is not None for row in side.describe()]
    },
    in_use=lambda doc, g: doc.auth.inbound is not None or doc.auth.outbound is not None,
    # Who may call at all (inbound); this app's own egress policy, before anything is spent.
    filters=(FilterSlot(10, DIRECTIONS, lambda c: AuthFilter(c.governance, c.direction)),),
    per_direction=True,
)
