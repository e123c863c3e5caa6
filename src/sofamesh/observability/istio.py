"""Istio's standard metrics, so Istio's Grafana dashboards and Kiali read a sofamesh mesh.

Names, label names and buckets follow Istio's "Standard Metrics" reference:
`istio_requests_total`, `istio_request_duration_milliseconds`,
`istio_request_bytes` and `istio_response_bytes`, each labelled with the reporter
(`source` on the caller's side, `destination` on the provider's), the two
workloads, the service, the protocol and the outcome. A sofamesh app is its
own workload, app and canonical service; the namespace is `metrics.namespace`.

With mutual TLS (`tls:`), the principals are SPIFFE IDs: the provider reports the
caller's verified ID (`inv.peer`) and its own; the caller reports its own and the ID its
endpoint published, which its TLS client required the endpoint's certificate to carry.
`connection_security_policy` is `mutual_tls` on such a hop, `none` otherwise. Without
an identity (or on a plaintext hop, for the peer), a principal is `unknown`.

Connections relayed as plain TCP (transparent interception's pass-through of unknown
destinations, the permissive inbound relay) count in Istio's TCP family instead:
`istio_tcp_connections_opened_total`, `..._closed_total`, `istio_tcp_received_bytes_total`
(from the connecting side) and `istio_tcp_sent_bytes_total` (back to it), with
`request_protocol="tcp"` and no response code. Bytes are added as the relay moves them,
so a long connection shows its traffic while it lasts.

A call records one tuple of the labels that vary; the rest are filled in when
scraped. A service name no registry, route or listener knows (the filter's `known`) is
reported as `destination_service="unknown"`, as Istio reports what it cannot name. Series
are capped (`metrics.max_istio_series`): past it, new label sets count under
`destination_service="_other"`, so peers choosing names cannot grow memory.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Literal

from sofamesh.chain import Handler
from sofamesh.clock import Clock
from sofamesh.config.telemetry import MetricsConfig
from sofamesh.endpoint import Endpoint
from sofamesh.filters.stats import Known
from sofamesh.model import Invocation, Result
from sofamesh.observability import call
from sofamesh.stats import Family
from sofamesh.transport.tls import META_ID, META_MODE, PERMISSIVE, STRICT
from sofamesh.transport.tls_listener import MeshTls

Reporter = Literal["source", "destination"]
# Istio's byte-size buckets (1 B to 1 GB, by tens).
BYTE_BUCKETS = tuple(float(10**i) for i in range(10))
MAX_SERIES = 4096  # `metrics.max_istio_series`'s default
_UNKNOWN = "unknown"
_MTLS_MODES = (PERMISSIVE, STRICT)
# reporter, source app, destination app, service, protocol, code, grpc status, flags, policy,
# source version, destination version, source principal, destination principal
Key = tuple[str, str, str, str, str, str, str, str, str, str, str, str, str]
# reporter, source app, destination app, service, service name, flags, policy,
# source version, destination version, source principal, destination principal
TcpKey = tuple[str, str, str, str, str, str, str, str, str, str, str]
# Istio's `destination_service_name` for connections to no known service.
PASSTHROUGH = "PassthroughCluster"
INBOUND_PASSTHROUGH = "InboundPassthroughClusterIpv4"


class Buckets:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value


class Series:
    __slots__ = ("duration", "request_bytes", "requests", "response_bytes")

    def __init__(self, duration_buckets: tuple[float, ...]) -> None:
        self.requests = 0
        self.duration = Buckets(duration_buckets)
        self.request_bytes = Buckets(BYTE_BUCKETS)
        self.response_bytes = Buckets(BYTE_BUCKETS)


class TcpSeries:
    """One label set's TCP counters; a relay adds the bytes it moves to `received`/`sent`."""

    __slots__ = ("closed", "opened", "received", "sent")

    def __init__(self) -> None:
        self.opened = self.closed = self.received = self.sent = 0

    def failed(self) -> None:
        """A connection whose upstream could not be reached: opened and closed at once."""
        self.opened += 1
        self.closed += 1


def inbound_passthrough(host: str) -> str:
    """Istio's service name for a relayed inbound connection, by the address's family."""
    return INBOUND_PASSTHROUGH[:-1] + "6" if ":" in host else INBOUND_PASSTHROUGH


class IstioMetrics:
    """The series of one data plane (an SDK app or a sidecar)."""

    def __init__(
        self, config: MetricsConfig, app: str, version: str, tls: MeshTls | None = None
    ) -> None:
        self.app = app
        self.version = version or _UNKNOWN
        self.namespace = config.namespace
        self._buckets = config.duration_buckets_ms
        self.max_series = config.max_istio_series
        self._tls = tls
        self._principal = ""  # ours, read once there is an identity (rotation keeps the ID)
        self.series: dict[Key, Series] = {}
        self.tcp: dict[TcpKey, TcpSeries] = {}

    def observe(
        self, reporter: Reporter, inv: Invocation, result: Result, ms: float, service: str = ""
    ) -> None:
        """`service`: the label to report instead of `inv.service` (`unknown` for made-up names)."""
        ep = result.endpoint or inv.endpoint
        if reporter == "source":
            src, src_ver = self.app, self.version
            dst = ep.app if ep is not None and ep.app else _UNKNOWN
            dst_ver = ep.version if ep is not None and ep.version else _UNKNOWN
            src_id, dst_id = self.principal(), self._published(ep)
            mtls = dst_id != _UNKNOWN
        else:
            src, src_ver = inv.caller or _UNKNOWN, _UNKNOWN
            dst, dst_ver = self.app, self.version
            src_id, dst_id, mtls = inv.peer or _UNKNOWN, self.principal(), bool(inv.peer)
        key: Key = (
            reporter, src, dst, service or inv.service, _protocol(inv.protocol),
            str(call.response_code(inv, result)), call.grpc_status(inv, result),
            call.response_flags(result), "mutual_tls" if mtls else "none", src_ver, dst_ver,
            src_id, dst_id,
        )  # fmt: skip
        series = self.series.get(key) or self._new(key)
        series.requests += 1
        series.duration.observe(ms)
        series.request_bytes.observe(call.body_size(inv.payload))
        series.response_bytes.observe(call.body_size(result.payload))

    def tcp_series(
        self, reporter: Reporter, service: str, service_name: str, flags: str = "-"
    ) -> TcpSeries:
        """The counters of a plaintext TCP connection this side relays to `service`."""
        if reporter == "source":
            src, src_ver, dst, dst_ver = self.app, self.version, _UNKNOWN, _UNKNOWN
            src_id, dst_id = self.principal(), _UNKNOWN
        else:
            src, src_ver, dst, dst_ver = _UNKNOWN, _UNKNOWN, self.app, self.version
            src_id, dst_id = _UNKNOWN, self.principal()
        key: TcpKey = (
            reporter, src, dst, service, service_name, flags, "none", src_ver, dst_ver,
            src_id, dst_id,
        )  # fmt: skip
        found = self.tcp.get(key)
        if found is None:
            if len(self.tcp) >= self.max_series:  # peers choose the addresses: bounded like calls
                key = (*key[:3], "_other", "_other", *key[5:])
                found = self.tcp.get(key)
            if found is None:
                found = self.tcp[key] = TcpSeries()
        return found

    def principal(self) -> str:
        """This data plane's SPIFFE ID, `unknown` without TLS or before one is issued."""
        if not self._principal and self._tls is not None:
            identity = self._tls.contexts.source.loaded
            if identity is None:  # to be issued by the control plane, not yet
                return _UNKNOWN
            self._principal = str(identity.spiffe_id)
        return self._principal or _UNKNOWN

    def _published(self, ep: Endpoint | None) -> str:
        """The ID an mTLS endpoint published (the one its certificate had to carry)."""
        if self._tls is None or ep is None:
            return _UNKNOWN
        mode = published = ""
        for key, value in ep.meta:  # a few pairs: read in place, no dict per call
            if key == META_MODE:
                mode = value
            elif key == META_ID:
                published = value
        return published if published and mode in _MTLS_MODES else _UNKNOWN

    def _new(self, key: Key) -> Series:
        if len(self.series) >= self.max_series:
            key = (*key[:3], "_other", *key[4:])
            found = self.series.get(key)
            if found is not None:
                return found
        series = self.series[key] = Series(self._buckets)
        return series

    def reset(self) -> None:
        self.series = {}
        self.tcp = {}

    def families(self) -> Iterator[Family]:
        rows = [(self._labels(key), s) for key, s in sorted(self.series.items())]
        yield Family(
            "istio_requests", "counter", "Requests, as Istio's standard metrics count them.",
            [("_total", labels, s.requests) for labels, s in rows],
        )  # fmt: skip
        for name, attr, help_ in (
            (
                "istio_request_duration_milliseconds",
                "duration",
                "Request duration in milliseconds.",
            ),
            ("istio_request_bytes", "request_bytes", "Request body sizes in bytes."),
            ("istio_response_bytes", "response_bytes", "Response body sizes in bytes."),
        ):
            samples = [x for labels, s in rows for x in _histogram(labels, getattr(s, attr))]
            yield Family(name, "histogram", help_, samples)
        if self.tcp:  # only data planes that relay plain TCP have the family
            yield from self._tcp_families()

    def _tcp_families(self) -> Iterator[Family]:
        rows = [(self._tcp_labels(key), s) for key, s in sorted(self.tcp.items())]
        for name, attr, help_ in (
            ("istio_tcp_sent_bytes", "sent", "Bytes sent back to the connecting side."),
            ("istio_tcp_received_bytes", "received", "Bytes received from the connecting side."),
            ("istio_tcp_connections_opened", "opened", "TCP connections opened."),
            ("istio_tcp_connections_closed", "closed", "TCP connections closed."),
        ):
            samples = [("_total", labels, getattr(s, attr)) for labels, s in rows]
            yield Family(name, "counter", help_, samples)

    def _tcp_labels(self, key: TcpKey) -> dict[str, str]:
        reporter, src, dst, service, name, flags, policy, src_ver, dst_ver, src_id, dst_id = key
        labels = self._labels(
            (reporter, src, dst, service, "tcp", "", "", flags, policy, src_ver, dst_ver,
             src_id, dst_id)
        )  # fmt: skip
        labels["destination_service_name"] = name
        del labels["response_code"], labels["grpc_response_status"]
        return labels

    def _labels(self, key: Key) -> dict[str, str]:
        reporter, src, dst, service, protocol, code, grpc, flags, policy, *rest = key
        src_ver, dst_ver, src_id, dst_id = rest
        ns = self.namespace
        return {
            "reporter": reporter,
            "source_workload": src, "source_workload_namespace": ns, "source_principal": src_id,
            "source_app": src, "source_version": src_ver, "source_canonical_service": src,
            "source_canonical_revision": src_ver, "source_cluster": _UNKNOWN,
            "destination_workload": dst, "destination_workload_namespace": ns,
            "destination_principal": dst_id, "destination_app": dst,
            "destination_version": dst_ver, "destination_service": service,
            "destination_service_name": service, "destination_service_namespace": ns,
            "destination_canonical_service": dst, "destination_canonical_revision": dst_ver,
            "destination_cluster": _UNKNOWN, "request_protocol": protocol,
            "response_code": code, "grpc_response_status": grpc, "response_flags": flags,
            "connection_security_policy": policy,
        }  # fmt: skip


def _protocol(name: str) -> str:
    """Istio's `request_protocol`: http, grpc; the mesh's RPC protocols by their names."""
    return "http" if name in ("http", "h2") else name


def _histogram(labels: dict[str, str], b: Buckets) -> Iterator[tuple[str, dict[str, str], float]]:
    cum = 0
    for bound, c in zip((*b.bounds, float("inf")), b.counts, strict=True):
        cum += c
        yield "_bucket", {**labels, "le": "+Inf" if bound == float("inf") else f"{bound:g}"}, cum
    yield "_sum", labels, b.sum
    yield "_count", labels, cum


class IstioFilter:
    """Records each call in Istio's metrics, as the reporter this side of the call is."""

    def __init__(
        self, metrics: IstioMetrics, reporter: Reporter, clock: Clock, *, known: Known | None = None
    ) -> None:
        self._metrics = metrics
        self._reporter = reporter
        self._clock = clock
        self._known = known

    async def invoke(self, inv: Invocation, call_next: Handler) -> Result:
        start = self._clock.now()
        result = await call_next(inv)
        known = self._known
        service = "" if known is None or known(inv.service, result) else _UNKNOWN
        ms = (self._clock.now() - start) * 1000
        self._metrics.observe(self._reporter, inv, result, ms, service)
        return result
