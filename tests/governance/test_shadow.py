"""The shared shadow-mode helper (Envoy filter_enabled / filter_enforced)."""

from __future__ import annotations

import random

import pytest

from sofamesh.governance.shadow import EnforcementConfig, Enforcer, Verdict


def never() -> float:
    raise AssertionError("no random draw expected")


def test_defaults_enforce_everything_without_drawing() -> None:
    e = Enforcer(EnforcementConfig(), rand=never)
    assert e.sample()
    assert e.reject() is Verdict.REJECT
    assert e.statistics().rejected == 1


def test_shadow_never_enforces() -> None:
    e = Enforcer(EnforcementConfig(shadow=True, enforced_fraction=1.0), rand=never)
    assert e.reject() is Verdict.SHADOW
    assert e.reject().admitted
    assert (e.statistics().shadowed, e.statistics().rejected) == (2, 0)


def test_enabled_fraction_samples_requests() -> None:
    rng = random.Random(3)
    e = Enforcer(EnforcementConfig(enabled_fraction=0.1), rand=rng.random)
    sampled = sum(e.sample() for _ in range(10_000))
    assert 900 < sampled < 1100
    assert e.statistics().skipped == 10_000 - sampled


def test_enforced_fraction_samples_rejections() -> None:
    draws = iter([0.1, 0.9])
    e = Enforcer(EnforcementConfig(enforced_fraction=0.5), rand=lambda: next(draws))
    assert e.reject() is Verdict.REJECT
    assert e.reject() is Verdict.SHADOW


def test_skip_is_admitted() -> None:
    assert Verdict.SKIP.admitted and not Verdict.REJECT.admitted


@pytest.mark.parametrize("kw", [{"enabled_fraction": 1.1}, {"enforced_fraction": -0.1}])
def test_fractions_validated(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        EnforcementConfig(**kw)
