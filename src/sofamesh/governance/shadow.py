"""Shadow mode: evaluate a rule, count what it would do, enforce only a fraction.

Every enforcing rule (breaker, rate limits, resource limits, authentication)
runs its verdict through one `Enforcer`, which mirrors Envoy's pair of runtime
fractions on its enforcing filters (local rate limit, RBAC shadow rules):

- ``filter_enabled`` -> `EnforcementConfig.enabled_fraction`: the share of
  requests the rule looks at at all. Outside it the rule is skipped: no
  evaluation, no state change, no counting (`Verdict.SKIP`).
- ``filter_enforced`` -> `EnforcementConfig.enforced_fraction`: the share of
  *rejections* that are enforced. A rejection that is not enforced lets the
  request through as `Verdict.SHADOW` and is counted, so a rule can run in
  production for a while before it bites. `shadow=True` is shorthand for an
  enforced fraction of zero.

A rule's state machine moves exactly as it would if every rejection were
enforced (a shadowed request takes no token and its outcome is not recorded),
so the shadow counters predict what enforcement would do on the same traffic.
The one exception is a gauge of work really in flight (concurrency limits,
resource limits): a shadowed call does run, so it holds a unit until released.
A rule that delays rather than rejects (pacing) asks `enforce()` whether to
impose the delay; a shadowed delay is counted and not waited.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable

import attrs


class Verdict(enum.Enum):
    """What a rule decided for one request."""

    ADMIT = "admit"  # evaluated, and within the rule
    REJECT = "reject"  # evaluated, outside the rule, and enforced
    SHADOW = "shadow"  # evaluated, outside the rule, let through (not enforced)
    SKIP = "skip"  # not evaluated (outside the enabled fraction)

    @property
    def admitted(self) -> bool:
        """True unless the request must be stopped."""
        return self is not Verdict.REJECT


def _fraction(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attr.name} must be within 0..1, got {value}")


@attrs.frozen(kw_only=True)
class EnforcementConfig:
    """Envoy's ``filter_enabled`` / ``filter_enforced``; both default to every request."""

    enabled_fraction: float = attrs.field(default=1.0, validator=_fraction)
    enforced_fraction: float = attrs.field(default=1.0, validator=_fraction)
    shadow: bool = False  # evaluate and count, never enforce

    @property
    def effective_enforced_fraction(self) -> float:
        return 0.0 if self.shadow else self.enforced_fraction


@attrs.frozen
class EnforcementStatistics:
    skipped: int  # requests outside the enabled fraction
    rejected: int  # rejections enforced
    shadowed: int  # rejections let through (shadow mode / not enforced)


class Enforcer:
    """Samples the enabled and enforced fractions and counts the outcomes.

    `rand` returns floats in [0, 1); pass a seeded `random.Random().random` in
    tests. It is not called at all when a fraction is 0 or 1, so the common
    configuration costs no random draws.
    """

    __slots__ = ("_enabled", "_enforced", "_rand", "always", "rejected", "shadowed", "skipped")

    def __init__(self, config: EnforcementConfig, rand: Callable[[], float] | None = None) -> None:
        self._enabled = config.enabled_fraction
        self._enforced = config.effective_enforced_fraction
        self._rand = rand or random.random
        # Every request evaluated (the default): a hot path tests this before calling `sample`.
        self.always = self._enabled >= 1.0
        self.skipped = 0
        self.rejected = 0
        self.shadowed = 0

    def sample(self) -> bool:
        """Whether this request is evaluated at all (``filter_enabled``)."""
        enabled = self._enabled
        if enabled >= 1.0 or (enabled > 0.0 and self._rand() < enabled):
            return True
        self.skipped += 1
        return False

    def enforce(self) -> bool:
        """Whether to enforce this one (``filter_enforced``); counts it as shadowed if not."""
        enforced = self._enforced
        if enforced >= 1.0 or (enforced > 0.0 and self._rand() < enforced):
            return True
        self.shadowed += 1
        return False

    def reject(self) -> Verdict:
        """The rule says no: enforce it (`REJECT`), or let it through and count (`SHADOW`)."""
        if self.enforce():
            self.rejected += 1
            return Verdict.REJECT
        return Verdict.SHADOW

    def statistics(self) -> EnforcementStatistics:
        return EnforcementStatistics(self.skipped, self.rejected, self.shadowed)
