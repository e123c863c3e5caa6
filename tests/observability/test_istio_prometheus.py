"""Istio's dashboard queries in a real Prometheus scraping two sidecars' `/stats/prometheus`.

The queries are those of Istio's Service and Workload dashboards, with their
variables filled in, evaluated at the first scrape that saw the second burst of
calls (so `irate` has two samples that differ). The first burst has failures,
the second none: the success-rate panel reads 1 for the second, the totals 12/14.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from istio_support import SERVICE, istio_mesh, traffic

from sofamesh.sidecar.app import Sidecar

pytestmark = pytest.mark.anyio
DEST = f'reporter=~"destination",destination_service=~"{SERVICE}"'
TOTAL = f"sum(istio_requests_total{{{DEST}}})"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def prometheus_config(path: Path, *cars: Sidecar) -> None:
    targets = ", ".join(f'"{c.bound["admin"]}"' for c in cars)
    path.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: sofamesh\n"
        "    metrics_path: /stats/prometheus\n"
        f"    static_configs: [{{targets: [{targets}]}}]\n"
    )


async def query(client: httpx.AsyncClient, expr: str, at: float | None = None) -> list[Any]:
    params: dict[str, Any] = {"query": expr}
    if at is not None:
        params["time"] = f"{at:.3f}"
    r = await client.get("/api/v1/query", params=params)
    assert r.status_code == 200, r.text
    result: list[Any] = r.json()["data"]["result"]
    return result


async def scalar(client: httpx.AsyncClient, expr: str, at: float | None = None) -> float | None:
    result = await query(client, expr, at)
    return float(result[0]["value"][1]) if result else None


async def ready(client: httpx.AsyncClient, proc: anyio.abc.Process) -> None:
    """Wait for Prometheus to listen and open its storage (slow on a loaded machine)."""
    with anyio.fail_after(90):
        while True:
            assert proc.returncode is None, "prometheus exited: see prometheus.log"
            try:
                if (await client.get("/-/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            await anyio.sleep(0.2)  # polling an external process


async def first_scrape_with(client: httpx.AsyncClient, total: float) -> float:
    """The time of the first scrape whose destination total is `total` (polling Prometheus)."""
    with anyio.fail_after(30):
        while True:
            result = await query(client, f"{TOTAL}")
            if result and float(result[0]["value"][1]) >= total:
                break
            await anyio.sleep(0.2)  # polling an external process
    raw = await query(client, f'istio_requests_total{{{DEST},response_code="200"}}[2m]')
    ok = total - 2
    return min(float(t) for series in raw for t, v in series["values"] if float(v) >= ok)


async def test_istio_dashboards_in_prometheus(tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    assert binary is not None, "prometheus is not installed (scripts/setup.sh installs it)"
    port = free_port()
    async with istio_mesh() as (shop, orders):
        prometheus_config(tmp_path / "prometheus.yml", shop, orders)
        args = [
            binary, f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ]  # fmt: skip
        with (tmp_path / "prometheus.log").open("wb") as log:
            proc = await anyio.open_process(args, stdout=log, stderr=log)
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                    await ready(client, proc)
                    await traffic(shop, ok=6, failed=2)
                    await first_scrape_with(client, 8)
                    await traffic(shop, ok=6, failed=0)
                    at = await first_scrape_with(client, 14)
                    await check_panels(client, at)
            finally:
                proc.terminate()
                with anyio.fail_after(10):
                    await proc.wait()


async def check_panels(client: httpx.AsyncClient, at: float) -> None:
    # Service dashboard: "Incoming Request Volume", "Incoming Success Rate (non-5xx responses)"
    volume = await scalar(
        client, f"round(sum(irate(istio_requests_total{{{DEST}}}[5m])), 0.001)", at
    )
    assert volume is not None and volume > 0
    success = (
        f'sum(irate(istio_requests_total{{{DEST},response_code!~"5.*"}}[5m])) / '
        f"sum(irate(istio_requests_total{{{DEST}}}[5m]))"
    )
    assert await scalar(client, success, at) == 1.0
    totals = f'sum(istio_requests_total{{{DEST},response_code!~"5.*"}}) / {TOTAL}'
    assert await scalar(client, totals, at) == pytest.approx(12 / 14)
    # "Incoming Request Duration By Source" (P50)
    p50 = (
        "histogram_quantile(0.50, sum(irate(istio_request_duration_milliseconds_bucket"
        f"{{{DEST}}}[1m])) by (le))"
    )
    value = await scalar(client, p50, at)
    assert value is not None and 0 < value < 5000
    # Workload dashboard: "Incoming Requests By Source And Response Code"
    by_source = (
        'sum(irate(istio_requests_total{connection_security_policy!="mutual_tls",'
        'destination_workload_namespace=~"default",destination_workload=~"orders",'
        'reporter=~"destination"}[5m])) by (source_workload, source_workload_namespace)'
    )
    [row] = await query(client, by_source, at)
    assert row["metric"] == {"source_workload": "shop", "source_workload_namespace": "default"}
    # Kiali's graph: outbound edges as the source reports them
    edges = 'sum(istio_requests_total{reporter="source"}) by (source_workload, destination_service)'
    [edge] = await query(client, edges, at)
    assert edge["metric"] == {"source_workload": "shop", "destination_service": SERVICE}
