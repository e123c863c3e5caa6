"""Workers' counters summed at the main process's admin API (sidecar/worker_stats.py)."""

from __future__ import annotations

import json

from sofamesh.model import Status
from sofamesh.sidecar.supervisor import merge_clusters
from sofamesh.sidecar.worker_stats import (
    family_state,
    merged,
    merged_families,
    requests_served,
    stats_state,
    summed,
    summed_rows,
)
from sofamesh.stats import Family, Stats


def worker(calls: list[tuple[Status, float, int]], counter: int) -> Stats:
    stats = Stats()
    for status, ms, code in calls:
        stats.service("inbound", "svc", "").record(status, ms, code)
        stats.endpoint("svc", "127.0.0.1:1").record(status, ms, code)
    stats.service("inbound", "svc", "").active = 1
    stats.incr("inbound.unknown_service", counter)
    return stats


def test_counters_histograms_and_codes_add_up_through_json() -> None:
    a = worker([(Status.OK, 1.0, 200), (Status.OK, 3.0, 200)], 2)
    b = worker([(Status.OK, 700.0, 200), (Status.UNAVAILABLE, 2.0, 503)], 3)
    states = [json.loads(json.dumps(stats_state(s))) for s in (a, b)]  # as the link carries them
    total = merged(states)
    cs = total.service("inbound", "svc", "")
    assert (cs.total, cs.active, cs.errors) == (4, 2, 1)
    assert cs.by_status == {Status.OK: {200: 3}, Status.UNAVAILABLE: {503: 1}}
    assert cs.latency.count == 4 and cs.latency.sum_ms == 706.0
    # The merged quantile is that of all four calls, not an average of each worker's.
    assert cs.latency.quantile(0.99) == 1000
    assert total.endpoint("svc", "127.0.0.1:1").total == 4
    assert total.counters == {"inbound.unknown_service": 5}
    assert [requests_served(s) for s in states] == [2, 2]


def test_clusters_merge_by_endpoint_with_each_workers_health() -> None:
    def view(health: str, active: int) -> list[dict[str, object]]:
        ep = {"address": "127.0.0.1:1", "health": health, "active_requests": active}
        return [{"service": "svc", "balancer": "round_robin", "endpoints": [ep]}]

    rows = merge_clusters([view("healthy", 1), view("ejected", 2)])
    assert len(rows) == 1
    (ep,) = rows[0]["endpoints"]  # type: ignore[misc]
    assert ep["active_requests"] == 3
    assert ep["health_by_worker"] == ["healthy", "ejected"]


def test_rule_decisions_are_summed_and_states_kept() -> None:
    one = {"svc": {"passed": 3, "blocked": 1, "state": "closed", "ratio": 0.5, "on": True}}
    two = {"svc": {"passed": 2, "blocked": 0, "state": "open", "ratio": 0.25, "on": True}}
    three = {"other": {"passed": 1}}
    assert summed([one, two, three]) == {
        "svc": {"passed": 5, "blocked": 1, "state": "closed", "ratio": 0.75, "on": True},
        "other": {"passed": 1},
    }


def test_prometheus_families_sum_each_sample_across_workers() -> None:
    def family(value: float) -> Family:
        samples = [("_total", {"code": "200"}, value), ("_total", {"code": "503"}, 1.0)]
        return Family("istio_requests", "counter", "Requests.", samples)

    states = [json.loads(json.dumps(family_state([family(v)]))) for v in (2.0, 5.0)]
    (total,) = merged_families(states)
    assert total.name == "istio_requests" and total.kind == "counter"
    assert sorted((s[1]["code"], s[2]) for s in total.samples) == [("200", 7.0), ("503", 2.0)]


def test_connection_rows_are_summed_per_listener_and_per_endpoint() -> None:
    a = [{"name": "inbound[0]", "downstream_cx_active": 2, "downstream_cx_total": 5}]
    b = [
        {"name": "inbound[0]", "downstream_cx_active": 1, "downstream_cx_total": 4},
        {"name": "outbound[0]", "downstream_cx_active": 3, "downstream_cx_total": 3},
    ]
    assert summed_rows([a, b, []], ("name",)) == [
        {"name": "inbound[0]", "downstream_cx_active": 3, "downstream_cx_total": 9},
        {"name": "outbound[0]", "downstream_cx_active": 3, "downstream_cx_total": 3},
    ]
    up = {"protocol": "http", "address": "127.0.0.1:1", "upstream_cx_active": 1}
    other = {**up, "protocol": "bolt"}  # another pool to the same address: its own row
    assert summed_rows([[up, other], [up]], ("protocol", "address")) == [
        {**up, "upstream_cx_active": 2},
        other,
    ]
