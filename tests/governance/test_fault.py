"""Fault injection decisions (Envoy's HTTP fault filter)."""

from __future__ import annotations

import random

import pytest

from sofamesh.governance.fault import (
    ABORT_HEADER,
    ABORT_PERCENT_HEADER,
    DELAY_HEADER,
    DELAY_PERCENT_HEADER,
    NO_FAULT,
    AbortFault,
    DelayFault,
    FaultConfig,
    FaultInjector,
)
from sofamesh.model import Headers, Status

NONE = Headers()


def test_fixed_delay_for_every_call() -> None:
    f = FaultInjector(FaultConfig(delay=DelayFault(fixed_delay=0.25)))
    d = f.decide(NONE)
    assert (d.delay, d.abort) == (0.25, None)
    assert f.statistics().delays_injected == 1


def test_abort_with_status_and_code() -> None:
    f = FaultInjector(FaultConfig(abort=AbortFault(status=Status.UNAVAILABLE, code=503)))
    d = f.decide(NONE)
    assert (d.delay, d.abort, d.code) == (0.0, Status.UNAVAILABLE, 503)


def test_delay_percentage_is_sampled() -> None:
    rng = random.Random(11)
    f = FaultInjector(
        FaultConfig(delay=DelayFault(fixed_delay=1.0, percentage=30)), rand=rng.random
    )
    hits = 0
    for _ in range(5000):
        d = f.decide(NONE)
        hits += d.injected
        f.finish(d)
    assert 1350 < hits < 1650


def test_zero_percentage_never_draws() -> None:
    def never() -> float:
        raise AssertionError("no draw expected")

    f = FaultInjector(FaultConfig(abort=AbortFault(code=500, percentage=0)), rand=never)
    assert f.decide(NONE) is NO_FAULT


def test_delay_and_abort_drawn_independently() -> None:
    draws = iter([0.1, 0.9])  # delay chosen (< 50%), abort not
    cfg = FaultConfig(
        delay=DelayFault(fixed_delay=0.5, percentage=50),
        abort=AbortFault(code=500, percentage=50),
    )
    d = FaultInjector(cfg, rand=lambda: next(draws)).decide(NONE)
    assert (d.delay, d.abort) == (0.5, None)


def test_both_faults_can_apply() -> None:
    cfg = FaultConfig(delay=DelayFault(fixed_delay=0.5), abort=AbortFault(code=500))
    d = FaultInjector(cfg).decide(NONE)
    assert (d.delay, d.abort, d.code) == (0.5, Status.APP_ERROR, 500)


def test_header_delay_only_when_header_asks() -> None:
    f = FaultInjector(FaultConfig(delay=DelayFault(from_header=True)))
    assert f.decide(NONE) is NO_FAULT
    assert f.decide(Headers([(DELAY_HEADER, "150")])).delay == pytest.approx(0.15)


def test_header_abort_takes_code_from_header() -> None:
    f = FaultInjector(FaultConfig(abort=AbortFault(from_header=True)))
    assert f.decide(NONE) is NO_FAULT
    d = f.decide(Headers([(ABORT_HEADER, "429")]))
    assert (d.abort, d.code) == (Status.APP_ERROR, 429)


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "nan", ""])
def test_malformed_abort_header_injects_nothing(value: str) -> None:
    f = FaultInjector(FaultConfig(abort=AbortFault(from_header=True)))
    assert f.decide(Headers([(ABORT_HEADER, value)])) is NO_FAULT


def test_header_percentage_can_lower_but_not_raise() -> None:
    cfg = FaultConfig(delay=DelayFault(from_header=True, percentage=20))
    at_30 = FaultInjector(cfg, rand=lambda: 0.3)
    ask_100 = Headers([(DELAY_HEADER, "10"), (DELAY_PERCENT_HEADER, "100")])
    assert at_30.decide(ask_100) is NO_FAULT  # capped at the configured 20%
    at_10 = FaultInjector(cfg, rand=lambda: 0.1)
    ask_5 = Headers([(DELAY_HEADER, "10"), (DELAY_PERCENT_HEADER, "5")])
    assert at_10.decide(ask_5) is NO_FAULT  # lowered to 5%
    assert at_10.decide(Headers([(DELAY_HEADER, "10")])).injected


def test_abort_percentage_header() -> None:
    cfg = FaultConfig(abort=AbortFault(from_header=True))
    f = FaultInjector(cfg, rand=lambda: 0.5)
    assert f.decide(Headers([(ABORT_HEADER, "503"), (ABORT_PERCENT_HEADER, "40")])) is NO_FAULT
    assert f.decide(Headers([(ABORT_HEADER, "503"), (ABORT_PERCENT_HEADER, "60")])).injected


def test_match_headers_limit_the_fault() -> None:
    cfg = FaultConfig(
        abort=AbortFault(code=500), match_headers={"X-Test": "yes", "x-present": None}
    )
    f = FaultInjector(cfg)
    assert f.decide(Headers([("x-test", "yes")])) is NO_FAULT
    assert f.decide(Headers([("x-test", "no"), ("x-present", "")])) is NO_FAULT
    assert f.decide(Headers([("x-test", "yes"), ("x-present", "1")])).injected


def test_max_active_faults_overflow() -> None:
    f = FaultInjector(FaultConfig(delay=DelayFault(fixed_delay=1.0), max_active_faults=2))
    a, b = f.decide(NONE), f.decide(NONE)
    assert f.decide(NONE) is NO_FAULT
    s = f.statistics()
    assert (s.active_faults, s.faults_overflow) == (2, 1)
    f.finish(a)
    assert f.decide(NONE).injected
    f.finish(b)
    f.finish(NO_FAULT)  # a call without a fault frees nothing
    assert f.statistics().active_faults == 1


@pytest.mark.parametrize(
    "build",
    [
        lambda: DelayFault(fixed_delay=-1),
        lambda: DelayFault(percentage=101),
        lambda: AbortFault(code=-5),
        lambda: FaultConfig(max_active_faults=-1),
    ],
)
def test_config_validated(build: object) -> None:
    with pytest.raises(ValueError):
        build()  # type: ignore[operator]
