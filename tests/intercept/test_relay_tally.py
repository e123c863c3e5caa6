"""The plain TCP relay counts its connection and the bytes it moves each way into Istio's
TCP series, which the Prometheus text renders with Istio's labels."""

from __future__ import annotations

import anyio
import anyio.abc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sofamesh.config.telemetry import MetricsConfig
from sofamesh.intercept.relay import relay
from sofamesh.observability.istio import PASSTHROUGH, IstioMetrics, TcpSeries
from sofamesh.stats import render

pytestmark = pytest.mark.anyio

FIRST = b"sniffed"
UP = b"u" * 200_000  # more than one relay buffer
DOWN = b"d" * 70_000


async def _read_all(stream: anyio.abc.ByteStream) -> bytes:
    got = b""
    try:
        while True:
            got += await stream.receive()
    except anyio.EndOfStream:
        return got


async def _relayed(tally: TcpSeries | None) -> tuple[bytes, bytes]:
    """What the upstream and the client each read through one relayed connection."""
    heard: list[bytes] = []

    async def upstream(conn: anyio.abc.SocketStream) -> None:
        async with conn:
            heard.append(await _read_all(conn))
            await conn.send(DOWN)

    async with (
        await anyio.create_tcp_listener(local_host="127.0.0.1") as up,
        await anyio.create_tcp_listener(local_host="127.0.0.1") as front,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(up.serve, upstream)
        up_port = up.extra(anyio.abc.SocketAttribute.local_port)

        async def proxy(conn: anyio.abc.SocketStream) -> None:
            far = await anyio.connect_tcp("127.0.0.1", up_port)
            async with far, conn:
                await relay(conn, far, FIRST, tally)

        tg.start_soon(front.serve, proxy)
        async with await anyio.connect_tcp(
            "127.0.0.1", front.extra(anyio.abc.SocketAttribute.local_port)
        ) as client:
            await client.send(UP)
            await client.send_eof()  # the half-close reaches the upstream through the relay
            answer = await _read_all(client)
        tg.cancel_scope.cancel()
    return heard[0], answer


async def test_bytes_each_way_and_the_connection_are_counted() -> None:
    metrics = IstioMetrics(MetricsConfig(istio=True), "shop", "v1")
    series = metrics.tcp_series("source", "10.0.0.9:5432", PASSTHROUGH)
    with anyio.fail_after(10):
        heard, answer = await _relayed(series)
    assert heard == FIRST + UP and answer == DOWN
    assert (series.opened, series.closed) == (1, 1)
    assert (series.received, series.sent) == (len(FIRST + UP), len(DOWN))


async def test_without_a_tally_the_relay_is_unchanged() -> None:
    with anyio.fail_after(10):
        assert await _relayed(None) == (FIRST + UP, DOWN)


def _samples(metrics: IstioMetrics, reporter: str) -> dict[str, tuple[dict[str, str], float]]:
    text = render(metrics.families())
    return {
        s.name: (dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("istio_tcp_") and s.labels["reporter"] == reporter
    }


def test_the_tcp_family_has_istios_labels() -> None:
    metrics = IstioMetrics(MetricsConfig(istio=True, namespace="shop-ns"), "shop", "v1")
    assert _samples(metrics, "source") == {}  # no relayed connection: no TCP family
    series = metrics.tcp_series("source", "10.0.0.9:5432", PASSTHROUGH)
    series.opened, series.received, series.sent = 2, 120, 45
    metrics.tcp_series("destination", "10.0.0.2:8080", "InboundPassthroughClusterIpv4", "UF")
    samples = _samples(metrics, "source")
    labels, value = samples["istio_tcp_received_bytes_total"]
    assert value == 120 and samples["istio_tcp_sent_bytes_total"][1] == 45
    assert samples["istio_tcp_connections_opened_total"][1] == 2
    assert samples["istio_tcp_connections_closed_total"][1] == 0
    assert labels["reporter"] == "source" and labels["request_protocol"] == "tcp"
    assert labels["source_workload"] == "shop" and labels["source_version"] == "v1"
    assert labels["destination_workload"] == "unknown"
    assert labels["destination_service"] == "10.0.0.9:5432"
    assert labels["destination_service_name"] == PASSTHROUGH
    assert labels["source_workload_namespace"] == "shop-ns"
    assert labels["connection_security_policy"] == "none" and labels["response_flags"] == "-"
    assert "response_code" not in labels and "grpc_response_status" not in labels
    labels, value = _samples(metrics, "destination")["istio_tcp_connections_opened_total"]
    assert labels["destination_workload"] == "shop" and labels["source_workload"] == "unknown"
    assert labels["response_flags"] == "UF" and value == 0
    metrics.reset()
    assert _samples(metrics, "source") == {}
