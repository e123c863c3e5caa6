"""What a data plane tells about its calls: tracing, access logs, Istio's metrics.

Frozen like the rest of the configuration (`sofamesh.config.model` holds these
under `tracing:`, `metrics:` and each listener's `access_log:`); docs/observability.md
explains each key and why its default is what it is.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Literal

import attrs

Propagation = Literal["w3c", "b3", "b3multi", "sofatracer"]

# Istio's default buckets for `istio_request_duration_milliseconds` (proxy's stats filter).
ISTIO_BUCKETS_MS = (
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
    30000.0, 60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
)  # fmt: skip


def _fraction(_inst: object, _attr: attrs.Attribute[Any], value: float) -> None:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"must be within 0..1, got {value}")


def _positive(_inst: object, _attr: attrs.Attribute[Any], value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"must be positive, got {value}")


def _formats(_inst: object, _attr: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    if not value:
        raise ValueError("name at least one format (w3c, b3, b3multi, sofatracer)")


def _buckets(_inst: object, _attr: attrs.Attribute[Any], value: tuple[float, ...]) -> None:
    if not value or any(b <= a for a, b in itertools.pairwise(value)):
        raise ValueError("must be a non-empty list of increasing bounds")


@attrs.frozen
class TracingConfig:
    """Spans for every mesh hop, and the trace context carried to the next one.

    Off, no tracing filter is composed at all (the headers pass through as any
    other). `propagation` lists the formats read from a request (the first found
    wins) and all written on the way out.
    """

    enabled: bool = False
    propagation: tuple[Propagation, ...] = attrs.field(default=("w3c",), validator=_formats)
    sample_ratio: float = attrs.field(default=0.01, validator=_fraction)
    parent_based: bool = True  # follow the caller's sampled flag when it sent one
    always_on_errors: bool = True  # keep a failed call's span even when not sampled
    # OTLP/HTTP endpoint (`http://collector:4318/v1/traces`); none: ids propagate, nothing exported.
    otlp_endpoint: str | None = None
    service_name: str | None = None  # OTel's `service.name`; default: the app
    max_buffered_spans: int = attrs.field(default=4096, validator=_positive)
    max_export_batch: int = attrs.field(default=512, validator=_positive)
    export_interval: float = attrs.field(default=1.0, validator=_positive)
    export_timeout: float = attrs.field(default=5.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        url = self.otlp_endpoint
        if url is not None and not url.startswith("http://"):
            raise ValueError(f"otlp_endpoint: expected http://host:port/path, got {url!r}")


@attrs.frozen
class AccessLogConfig:
    """One line per call on a sidecar listener (Envoy's file access log).

    `path`: `stderr`, `stdout`, `off`, or a file (reopened on SIGHUP and when
    rotated away). `format`: an Envoy format string (default: Envoy's default
    format); `json`: field name -> operator (`{"code": "%RESPONSE_CODE%"}`)
    instead. Successes are kept at `success_sample`, failures always.
    """

    path: str = "stderr"
    format: str | None = None
    json: dict[str, str] | None = None
    success_sample: float = attrs.field(default=1.0, validator=_fraction)
    flush_interval: float = attrs.field(default=1.0, validator=_positive)
    buffer_bytes: int = attrs.field(default=64 * 1024, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.format is not None and self.json is not None:
            raise ValueError("give format or json, not both")


@attrs.frozen
class MetricsConfig:
    """Istio's standard metrics next to sofamesh's own, so Istio's dashboards read them."""

    istio: bool = False
    duration_buckets_ms: tuple[float, ...] = attrs.field(
        default=ISTIO_BUCKETS_MS, validator=_buckets
    )
    namespace: str = "default"  # `*_workload_namespace` in Istio's labels
    # Series caps, so callers choosing names cannot grow the metrics (docs/reliability.md):
    # services counted apart per direction, callers per service, Istio's label sets.
    max_services: int = attrs.field(default=1000, validator=_positive)
    max_callers: int = attrs.field(default=64, validator=_positive)
    max_istio_series: int = attrs.field(default=4096, validator=_positive)
