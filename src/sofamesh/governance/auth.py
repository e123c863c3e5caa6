"""Service authentication: which callers may call a service or method.

Sentinel's ``AuthorityRule`` gives a resource either a white list or a black
list of caller apps (``limitApp`` + ``strategy``). Here a rule carries both
lists and a default, and rules exist per service and per method.

Precedence, for a call to (service, method) by a `Subject`:

1. **Deny wins.** If any principal of the subject is on the deny list of the
   service's rule *or* the method's rule, the call is denied.
2. Otherwise the **most specific rule** decides -- the method's rule if there
   is one, else the service's: a subject on its allow list is allowed, any
   other gets the rule's `default`.
3. A rule's `default`, when not given, is DENY if it has an allow list (a
   white list, as in Sentinel) and ALLOW otherwise (a pure black list).
4. With no rule for the service, `AuthConfig.default` decides (ALLOW).

A subject with no identity (no caller app, no verified peer) matches no list,
so it gets the default. Sentinel lets an empty origin through unconditionally;
here it does so only where the default allows.

The subject is a value, not a string: the caller's app, and on a mutual-TLS
hop its verified identity (a SPIFFE ID) as a second principal; then the app
is the one that ID names, never a declared one (the listeners see to that).
List entries are ``"app:<name>"`` (or a bare name, meaning an app) and
``"tls:<identity>"`` (a bare ``spiffe://...`` ID means the latter).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from sofamesh.governance.shadow import (
    EnforcementConfig,
    EnforcementStatistics,
    Enforcer,
    Verdict,
)

APP = "app"
TLS = "tls"


@attrs.frozen(slots=True)
class Principal:
    """One identity a caller can be known by: an app name, or a verified TLS identity."""

    kind: str = attrs.field(validator=attrs.validators.in_((APP, TLS)))
    name: str = attrs.field(validator=attrs.validators.min_len(1))

    @classmethod
    def parse(cls, text: str) -> Principal:
        if text.startswith("spiffe://"):
            return cls(TLS, text)
        kind, sep, name = text.partition(":")
        if sep and kind in (APP, TLS):
            return cls(kind, name)
        return cls(APP, text)  # a bare name is an app

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


@attrs.frozen(slots=True)
class Subject:
    """Who is calling: `app`, and on a mutual-TLS hop `tls_identity` (verified; `app` is then
    the app it names)."""

    app: str = ""
    tls_identity: str = ""
    principals: tuple[Principal, ...] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        found = []
        if self.app:
            found.append(Principal(APP, self.app))
        if self.tls_identity:
            found.append(Principal(TLS, self.tls_identity))
        object.__setattr__(self, "principals", tuple(found))


class Action(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"


def _principals(value: Iterable[str | Principal]) -> frozenset[Principal]:
    return frozenset(p if isinstance(p, Principal) else Principal.parse(p) for p in value)


@attrs.frozen(kw_only=True)
class AuthRule:
    service: str = attrs.field(validator=attrs.validators.min_len(1))
    method: str = ""  # "" = every method of the service
    allow: frozenset[Principal] = attrs.field(default=frozenset(), converter=_principals)
    deny: frozenset[Principal] = attrs.field(default=frozenset(), converter=_principals)
    default: Action | None = None  # None: DENY with an allow list, else ALLOW

    @property
    def effective_default(self) -> Action:
        if self.default is not None:
            return self.default
        return Action.DENY if self.allow else Action.ALLOW


def _unique(_inst: object, _attr: attrs.Attribute[Any], rules: tuple[AuthRule, ...]) -> None:
    seen: set[tuple[str, str]] = set()
    for r in rules:
        if (r.service, r.method) in seen:
            raise ValueError(f"two auth rules for service {r.service!r} method {r.method!r}")
        seen.add((r.service, r.method))


@attrs.frozen(kw_only=True)
class AuthConfig:
    rules: tuple[AuthRule, ...] = attrs.field(default=(), converter=tuple, validator=_unique)
    default: Action = Action.ALLOW  # for services no rule names
    enforcement: EnforcementConfig = attrs.field(factory=EnforcementConfig)


class Reason(enum.Enum):
    DENY_LIST = "deny_list"
    ALLOW_LIST = "allow_list"
    RULE_DEFAULT = "rule_default"
    NO_RULE = "no_rule"


@attrs.frozen(slots=True)
class AuthDecision:
    verdict: Verdict
    reason: Reason

    @property
    def admitted(self) -> bool:
        return self.verdict is not Verdict.REJECT


_DECISIONS = {(v, r): AuthDecision(v, r) for v in Verdict for r in Reason}


@attrs.frozen
class AuthStatistics:
    allowed: int
    denied: int  # denials decided (enforced or shadowed)
    enforcement: EnforcementStatistics


class Authorizer:
    """Checks subjects against one `AuthConfig`; O(1) per call (two dict lookups)."""

    def __init__(self, config: AuthConfig, rand: Callable[[], float] | None = None) -> None:
        self.config = config
        self._service = {r.service: r for r in config.rules if not r.method}
        self._method = {(r.service, r.method): r for r in config.rules if r.method}
        self._enforcer = Enforcer(config.enforcement, rand)
        self._allowed = 0
        self._denied = 0

    def check(self, subject: Subject, service: str, method: str) -> AuthDecision:
        if not self._enforcer.sample():
            return _DECISIONS[(Verdict.SKIP, Reason.NO_RULE)]
        action, reason = self._decide(subject.principals, service, method)
        if action is Action.ALLOW:
            self._allowed += 1
            return _DECISIONS[(Verdict.ADMIT, reason)]
        self._denied += 1
        return _DECISIONS[(self._enforcer.reject(), reason)]

    def _decide(
        self, principals: tuple[Principal, ...], service: str, method: str
    ) -> tuple[Action, Reason]:
        svc = self._service.get(service)
        meth = self._method.get((service, method))
        for rule in (svc, meth):
            if rule is not None and rule.deny and any(p in rule.deny for p in principals):
                return Action.DENY, Reason.DENY_LIST
        rule = meth if meth is not None else svc
        if rule is None:
            return self.config.default, Reason.NO_RULE
        if any(p in rule.allow for p in principals):
            return Action.ALLOW, Reason.ALLOW_LIST
        return rule.effective_default, Reason.RULE_DEFAULT

    def statistics(self) -> AuthStatistics:
        return AuthStatistics(self._allowed, self._denied, self._enforcer.statistics())
