"""Istio's standard metrics, read as Istio's Grafana dashboards read them.

The queries are from Istio's published dashboards (Istio Service Dashboard,
Istio Workload Dashboard), with their variables filled in. Here they are
evaluated on the scraped text with `prometheus_client`'s parser and the
queries' label selectors; test_istio_prometheus.py runs them in a real Prometheus.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from istio_support import SERVICE, istio_mesh, scrape, strict_tls, traffic
from prometheus_client.parser import text_string_to_metric_families
from tests.security.pki import DOMAIN

from sofamesh.config.telemetry import MetricsConfig
from sofamesh.model import Invocation, Result, Status
from sofamesh.observability import istio
from sofamesh.observability.rule_metrics import rule_families

pytestmark = pytest.mark.anyio
Sample = tuple[str, dict[str, str], float]
_MATCHER = re.compile(r'\s*(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"\s*,?')


def selector(expr: str) -> tuple[str, list[tuple[str, str, str]]]:
    """`name{label op "value", ...}` as (name, matchers)."""
    name, _, rest = expr.partition("{")
    return name.strip(), [m.groups() for m in _MATCHER.finditer(rest.rstrip("}"))]


def select(samples: list[Sample], expr: str) -> list[Sample]:
    name, matchers = selector(expr)

    def matches(labels: dict[str, str], label: str, op: str, value: str) -> bool:
        v = labels.get(label, "")
        full = re.fullmatch(value, v) is not None  # PromQL regexes are anchored
        return {"=": v == value, "!=": v != value, "=~": full, "!~": not full}[op]

    return [s for s in samples if s[0] == name and all(matches(s[1], *m) for m in matchers)]


def parse(text: str) -> list[Sample]:
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """PromQL's histogram_quantile over (le, cumulative count) pairs."""
    buckets.sort()
    total = buckets[-1][1]
    rank, prev_le, prev_c = q * total, 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c) if c > prev_c else le
        prev_le, prev_c = le, c
    return buckets[-1][0]


async def test_service_and_workload_dashboard_queries() -> None:
    async with istio_mesh() as (shop, orders):
        await traffic(shop, ok=6, failed=2)
        inbound, outbound = parse(await scrape(orders)), parse(await scrape(shop))
    dest = f'reporter=~"destination",destination_service=~"{SERVICE}"'
    # Service dashboard, "Incoming Request Volume" and "Incoming Success Rate (non-5xx responses)"
    total = select(inbound, f"istio_requests_total{{{dest}}}")
    ok = select(inbound, f'istio_requests_total{{{dest},response_code!~"5.*"}}')
    assert sum(s[2] for s in total) == 8 and sum(s[2] for s in ok) / 8 == 0.75
    # "Client Request Volume": the caller's own sidecar reports as source
    src = select(
        outbound, f'istio_requests_total{{reporter=~"source",destination_service=~"{SERVICE}"}}'
    )
    assert sum(s[2] for s in src) == 8
    # Workload dashboard: "Incoming Requests By Source And Response Code"
    by_source: dict[tuple[str, str, str], float] = {}
    expr = (
        'istio_requests_total{reporter=~"destination",'
        'destination_workload_namespace=~"default",destination_workload=~"orders"}'
    )
    for _, labels, v in select(inbound, expr):
        key = (
            labels["source_workload"],
            labels["source_workload_namespace"],
            labels["response_code"],
        )
        by_source[key] = by_source.get(key, 0) + v
    assert by_source == {("shop", "default", "200"): 6, ("shop", "default", "500"): 2}
    # "Request Duration" (P50), and the histograms' request sizes
    histogram = select(inbound, f"istio_request_duration_milliseconds_bucket{{{dest}}}")
    buckets = [(float(labels["le"]), v) for _, labels, v in histogram]
    assert 0 < quantile(0.5, buckets) < 5000
    size = select(inbound, f"istio_request_bytes_sum{{{dest}}}")
    assert sum(s[2] for s in size) == 8 * 20
    [labels] = {tuple(sorted(s[1].items())) for s in total if s[1]["response_code"] == "200"}
    d = dict(labels)
    assert (d["destination_version"], d["request_protocol"], d["connection_security_policy"]) == (
        "v2", "http", "none",
    )  # fmt: skip
    assert (d["destination_app"], d["source_app"], d["response_flags"]) == ("orders", "shop", "-")


async def test_principals_are_the_spiffe_ids_on_an_mtls_hop(tmp_path: Path) -> None:
    async with istio_mesh(tls=strict_tls(tmp_path)) as (shop, orders):
        await traffic(shop, ok=3, failed=0)
        inbound, outbound = parse(await scrape(orders)), parse(await scrape(shop))
    shop_id, orders_id = (f"spiffe://{DOMAIN}/ws/prod/app/{app}" for app in ("shop", "orders"))
    for samples, reporter in ((inbound, "destination"), (outbound, "source")):
        expr = f'istio_requests_total{{reporter="{reporter}",destination_service="{SERVICE}"}}'
        [(_, labels, count)] = select(samples, expr)
        got = (labels["source_principal"], labels["destination_principal"])
        assert (got, labels["connection_security_policy"], count) == (
            (shop_id, orders_id), "mutual_tls", 3,
        ), reporter  # fmt: skip


async def test_principals_are_unknown_on_a_plaintext_hop() -> None:
    async with istio_mesh() as (shop, orders):
        await traffic(shop, ok=1, failed=0)
        inbound, outbound = parse(await scrape(orders)), parse(await scrape(shop))
    for samples in (inbound, outbound):
        [(_, labels, _)] = select(
            samples, f'istio_requests_total{{destination_service="{SERVICE}"}}'
        )
        got = (labels["source_principal"], labels["destination_principal"])
        assert (got, labels["connection_security_policy"]) == (("unknown", "unknown"), "none")


async def test_buckets_are_configurable_and_metrics_off_by_default() -> None:
    async with istio_mesh(duration_buckets_ms=[1.0, 100000.0]) as (shop, orders):
        await traffic(shop, ok=1, failed=0)
        inbound = parse(await scrape(orders))
    les = {s[1]["le"] for s in select(inbound, "istio_request_duration_milliseconds_bucket")}
    assert les == {"1", "100000", "+Inf"}
    assert not MetricsConfig().istio


def test_series_are_capped() -> None:
    m = istio.IstioMetrics(MetricsConfig(istio=True), "orders", "")
    for i in range(istio.MAX_SERIES + 10):
        m.observe("destination", Invocation("http", f"svc{i}", "/"), Result(Status.OK, 200), 1.0)
    assert len(m.series) == istio.MAX_SERIES + 1
    other = [s for k, s in m.series.items() if k[3] == "_other"]
    assert [s.requests for s in other] == [10]


def test_rule_decisions_by_name() -> None:
    snapshot = {"rules": {
        "rate_limits": [{"rule": "qps", "service": "a", "passed": 5, "rejected": 2, "shadowed": 0},
                        {"rule": "qps", "service": "b", "passed": 1, "rejected": 0, "shadowed": 0}],
        "auth": [{"rule": "callers", "direction": "inbound", "allowed": 3, "denied": 1}],
        "breakers": [{"rule": "b1", "admitted": 4, "rejected": 0, "shadowed": 2}],
    }}  # fmt: skip
    [family] = rule_families(snapshot)
    got = {(s[1]["kind"], s[1]["rule"], s[1]["decision"]): s[2] for s in family.samples}
    assert got == {
        ("rate_limits", "qps", "allowed"): 6, ("rate_limits", "qps", "rejected"): 2,
        ("rate_limits", "qps", "shadow_would_reject"): 0,
        ("auth", "callers", "allowed"): 3, ("auth", "callers", "rejected"): 1,
        ("breakers", "b1", "allowed"): 4, ("breakers", "b1", "rejected"): 0,
        ("breakers", "b1", "shadow_would_reject"): 2,
    }  # fmt: skip


async def test_a_shadow_rules_decisions_are_scraped_by_name() -> None:
    limit = {"name": "orders-qps", "service": SERVICE, "count": 1, "enforcement": {"shadow": True}}
    async with istio_mesh(rules={"rate_limits": [limit]}) as (shop, orders):
        await traffic(shop, ok=10, failed=0)  # all pass: the rule only counts what it would refuse
        inbound = parse(await scrape(orders))
    decided = {
        s[1]["decision"]: s[2]
        for s in select(
            inbound, 'sofamesh_rule_decisions_total{kind="rate_limits",rule="orders-qps"}'
        )
    }
    assert decided["shadow_would_reject"] >= 1 and decided["rejected"] == 0
