"""Consul's checks on a fake clock: names, TTL lapses, HTTP answers, durations."""

from __future__ import annotations

import pytest

from sofamesh.clock import FakeClock
from sofamesh.sidecar.registry_apis import consul_checks as cc


def test_checks_are_named_as_consul_names_them() -> None:
    one = cc.checks_of("web-1", {"Check": {"TTL": "10s"}}, 0.0)
    assert [c.check_id for c in one] == ["service:web-1"]
    two = cc.checks_of("web-1", {"checks": [{"ttl": "5s"}, {"ttl": "5s", "CheckID": "mine"}]}, 0.0)
    assert [c.check_id for c in two] == ["service:web-1:1", "mine"]


def test_a_ttl_check_starts_critical_and_lapses_a_ttl_after_its_last_pass() -> None:
    clock = FakeClock()
    (check,) = cc.checks_of("web-1", {"check": {"ttl": "10s"}}, clock.now())
    assert check.status == "critical"
    check.set("passing", "", clock.now())
    clock.advance(9.5)
    assert not check.lapse(clock.now())
    check.set("warning", "slow", clock.now())  # any update renews the TTL
    clock.advance(9.5)
    assert not check.lapse(clock.now()) and check.status == "warning"
    clock.advance(1)
    assert check.lapse(clock.now())
    assert (check.status, check.output, check.critical_since) == (
        "critical",
        "TTL expired",
        clock.now(),
    )


def test_http_answers_map_to_statuses() -> None:
    assert [cc.http_status(c) for c in (200, 204, 429, 500, 404)] == [
        "passing", "passing", "warning", "critical", "critical",
    ]  # fmt: skip


def test_durations_and_bad_checks_are_refused_clearly() -> None:
    assert [cc.duration(d) for d in ("10s", "500ms", "1m", "1.5h")] == [10, 0.5, 60, 5400]
    with pytest.raises(ValueError, match="duration"):
        cc.duration("10")
    with pytest.raises(ValueError, match="only TTL and HTTP"):
        cc.checks_of("web-1", {"check": {"script": "true"}}, 0.0)
    with pytest.raises(ValueError, match="status"):
        cc.checks_of("web-1", {"check": {"ttl": "1s", "status": "fine"}}, 0.0)
