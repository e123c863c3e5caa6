"""The mesh configuration: frozen attrs classes, the single source of truth for both front doors.

The same `MeshConfig` drives the SDK (`sofamesh.open_mesh`) and the sidecar
(`python -m sofamesh.sidecar -c mesh.yaml`). docs/configuration.md documents
every key; keep the two in step.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from sofamesh.codecs.h2.limits import MIN_FRAME_SIZE
from sofamesh.codecs.http1.paths import REJECT_REQUEST
from sofamesh.config.checks import (
    app_name,
    cidr,
    dns_domain,
    frame_size,
    known_protocol,
    non_negative,
    positive,
    positive_finite,
    readable_file,
    service_patterns,
    window,
    worker_count,
)
from sofamesh.config.control_urls import ControlUrls
from sofamesh.config.telemetry import AccessLogConfig, MetricsConfig, TracingConfig
from sofamesh.upstream.settings import (
    BALANCERS,
    HealthCheckConfig,
    OutlierConfig,
    RemovalConfig,
    SuccessRateConfig,
)

EscapedSlashesAction = Literal["KEEP_UNCHANGED", "REJECT_REQUEST", "UNESCAPE_AND_FORWARD"]
Mode = Literal["sdk", "sidecar"]

DEFAULT_STATE = "/var/tmp/sofamesh/state"  # where a sidecar keeps what outlives a restart


@attrs.frozen
class Address:
    """A `host:port` pair. Port 0 asks the OS for a free port (tests, SDK providers).

    A bare port, as a number or a string (YAML reads `8080` and `"8080"` differently, a
    user means the same), is that port on 127.0.0.1.
    """

    host: str
    port: int

    @classmethod
    def parse(cls, value: Any) -> Address:
        if isinstance(value, Address):
            return value
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return cls("127.0.0.1", cls._port(value))
        if not isinstance(value, str):
            raise ValueError(f"expected host:port, got {value!r}")
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"expected host:port, got {value!r}")
        return cls(host.strip("[]"), cls._port(int(port)))

    @staticmethod
    def _port(port: int) -> int:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be within 0..65535, got {port}")
        return port

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@attrs.frozen
class LimitsConfig:
    """Explicit limits on what a listener accepts (Envoy's names in brackets)."""

    max_connections: int = attrs.field(default=10_000, validator=positive)
    # One client address's share of max_connections (0: a tenth of it); transport/admission.py.
    max_connections_per_source: int = attrs.field(default=0, validator=non_negative)
    max_header_bytes: int = attrs.field(
        default=64 * 1024, validator=positive
    )  # max_request_headers_kb
    max_body_bytes: int = attrs.field(default=16 * 1024 * 1024, validator=positive)
    # HTTP/1.1: a response body above this streams to the client as it arrives (0: never);
    # see docs/protocols/http.md.
    stream_threshold_bytes: int = attrs.field(default=1024 * 1024, validator=non_negative)
    idle_timeout: float = attrs.field(default=60.0, validator=positive)  # idle_timeout
    header_timeout: float = attrs.field(default=10.0, validator=positive)  # request_headers_timeout
    send_timeout: float = attrs.field(default=60.0, validator=positive)  # nginx's send_timeout
    # Bolt: a frame begun must arrive whole within frame_timeout; replies queued for a peer
    # that does not read them past max_write_buffer_bytes end the connection.
    frame_timeout: float = attrs.field(default=30.0, validator=positive)
    # Bolt: a frame begun that has not grown for this long is dropped with its connection.
    frame_progress_timeout: float = attrs.field(default=5.0, validator=positive)
    max_write_buffer_bytes: int = attrs.field(default=32 * 1024 * 1024, validator=positive)
    # HTTP/2 and gRPC listeners [http2_protocol_options]; see codecs/h2/limits.py.
    max_concurrent_streams: int = attrs.field(default=1000, validator=positive)
    max_frame_size: int = attrs.field(default=MIN_FRAME_SIZE, validator=frame_size)
    stream_window: int = attrs.field(default=1024 * 1024, validator=window)
    connection_window: int = attrs.field(default=16 * 1024 * 1024, validator=window)
    # HTTP/2 flood and rapid-reset defences, Envoy's names and defaults; see codecs/h2/guard.py.
    max_outbound_control_frames: int = attrs.field(default=1000, validator=positive)
    max_inbound_window_update_frames_per_data_frame_sent: int = attrs.field(
        default=10, validator=positive
    )
    max_inbound_priority_frames_per_stream: int = attrs.field(default=100, validator=positive)
    premature_reset_total_stream_count: int = attrs.field(default=500, validator=positive)
    # HTTP/1.1 and h2c paths [path_with_escaped_slashes_action]; see codecs/http1/paths.py.
    path_with_escaped_slashes_action: EscapedSlashesAction = REJECT_REQUEST


@attrs.frozen
class PolicyConfig:
    """How this app calls a service: the foundation's filters (timeout, retry, ejection)."""

    timeout: float = attrs.field(default=15.0, validator=positive)  # Envoy's route timeout default
    connect_timeout: float = attrs.field(default=1.0, validator=positive)
    connect_retries: int = attrs.field(default=2, validator=non_negative)
    balancer: str = attrs.field(default="round_robin", validator=attrs.validators.in_(BALANCERS))
    outlier: OutlierConfig = attrs.field(factory=OutlierConfig)
    max_connections_per_endpoint: int = attrs.field(default=256, validator=positive)
    pool_idle_timeout: float = attrs.field(default=30.0, validator=positive)
    health_check: HealthCheckConfig | None = None  # active probes between registry updates
    success_rate: SuccessRateConfig | None = None  # Envoy's success-rate outlier detection
    registry: RemovalConfig = attrs.field(factory=RemovalConfig)  # removals held for a lease


@attrs.frozen
class ListenerConfig:
    """One inbound or outbound listener of the sidecar (or the SDK's provider listener)."""

    protocol: str = attrs.field(validator=known_protocol)
    listen: Address
    upstream: Address | None = None  # inbound: the local app
    services: tuple[str, ...] = ()  # inbound: published on the app's behalf
    advertise: Address | None = None  # the address others should dial, if not `listen`
    limits: LimitsConfig = attrs.field(factory=LimitsConfig)
    # inbound: also forward services this sidecar does not publish to `upstream` (off: they
    # get a no_endpoint error, so a caller cannot reach the app by naming any service).
    catch_all: bool = False
    access_log: AccessLogConfig | None = None  # sidecar: one line per call (observability.md)


@attrs.frozen
class EndpointMeta:
    """Metadata published with every endpoint of this app."""

    version: str = ""
    zone: str = ""
    weight: int = attrs.field(default=100, validator=attrs.validators.in_(range(0, 10_001)))
    tags: tuple[str, ...] = ()


@attrs.frozen
class LocalApiConfig:
    """What an SDK in sidecar mode may publish through the local API (see `local_api.py`)."""

    token_file: str | None = None  # default: local_api.default_token_path(the admin port)
    # Services an app may publish besides those the inbound listeners list: names, or
    # prefixes ending in "*" ("com.example.*"; "*" allows any name).
    services: tuple[str, ...] = attrs.field(default=(), validator=service_patterns)
    upstreams: tuple[Address, ...] = ()  # allowed besides loopback addresses
    max_lease: float = attrs.field(default=300.0, validator=positive_finite)


def _loopback(_inst: object, _attr: attrs.Attribute[Any], value: Address) -> None:
    # Whoever reaches a registry API can publish into the mesh: only this host's apps may.
    if value.host not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError(f"a registry API listens on loopback only, got {value.host}")


@attrs.frozen
class RegistryApiConfig:
    """One registry's API served by the sidecar (`registry_apis`, docs/registries.md)."""

    listen: Address = attrs.field(validator=_loopback)


@attrs.frozen
class EurekaApiConfig(RegistryApiConfig):
    # seconds without a renewal, when a registration names no lease (Eureka's default)
    lease: float = attrs.field(default=90.0, validator=positive_finite)


@attrs.frozen
class NacosApiConfig(RegistryApiConfig):
    lease: float = attrs.field(default=15.0, validator=positive_finite)  # beat timeout
    delete_after: float = attrs.field(default=30.0, validator=positive_finite)


@attrs.frozen
class RegistryApisConfig:
    """The Eureka, Consul and Nacos APIs the sidecar serves to unchanged apps."""

    eureka: EurekaApiConfig | None = None
    consul: RegistryApiConfig | None = None
    nacos: NacosApiConfig | None = None
    max_services: int = attrs.field(default=64, validator=attrs.validators.ge(1))
    max_instances: int = attrs.field(default=256, validator=attrs.validators.ge(1))
    sweep_interval: float = attrs.field(default=1.0, validator=positive_finite)
    lookup_timeout: float = attrs.field(default=1.0, validator=positive_finite)
    # A registration is a few kilobytes: a larger request body gets 413, deeper JSON 400.
    max_body_bytes: int = attrs.field(default=64 * 1024, validator=attrs.validators.ge(1))
    max_json_depth: int = attrs.field(default=32, validator=attrs.validators.ge(2))

    @property
    def enabled(self) -> bool:
        return any((self.eureka, self.consul, self.nacos))


TlsMode = Literal["disable", "permissive", "strict"]


@attrs.frozen
class TlsConfig:
    """Mutual TLS on this data plane's mesh hops, with an identity from files (docs/security.md).

    `disable`: plaintext, as without `tls:`. `permissive`: inbound listeners take mTLS and
    plaintext on one port; calls to endpoints that publish mTLS use it. `strict`: inbound
    listeners refuse plaintext. The files are re-read when they change.
    """

    mode: TlsMode = "disable"
    cert: str | None = attrs.field(default=None, validator=readable_file)
    key: str | None = attrs.field(default=None, validator=readable_file)
    trust_bundle: str | None = attrs.field(default=None, validator=readable_file)
    # Per service, a mode stricter than `mode`: a `strict` service on a permissive data plane
    # refuses plaintext calls (its endpoints publish `mtls: strict`).
    services: dict[str, Literal["permissive", "strict"]] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if self.services and self.mode == "disable":
            raise ValueError("services: per-service modes need mode permissive or strict")
        given = [f for f in ("cert", "key", "trust_bundle") if getattr(self, f) is not None]
        # None of them: the control plane issues the identity (checked with `control:`).
        if self.mode != "disable" and len(given) not in (0, 3):
            missing = ", ".join(sorted({"cert", "key", "trust_bundle"} - set(given)))
            raise ValueError(f"mode {self.mode} needs cert, key and trust_bundle: no {missing}")

    @property
    def enabled(self) -> bool:
        return self.mode != "disable"

    def mode_for(self, service: str) -> TlsMode:
        return "strict" if self.mode == "strict" else self.services.get(service, self.mode)

    @property
    def strict_services(self) -> frozenset[str]:
        """Services stricter than the data plane: plaintext calls to them are refused."""
        if self.mode == "strict":
            return frozenset()  # the listeners already refuse plaintext
        return frozenset(s for s, m in self.services.items() if m == "strict")


@attrs.frozen
class DnsProxyConfig:
    """The sidecar's DNS proxy (docs/deployment.md): mesh names answered, the rest forwarded."""

    listen: Address = Address("127.0.0.1", 15053)
    upstream: Address | None = None  # default: the first nameserver in /etc/resolv.conf, port 53
    ttl: int = attrs.field(default=30, validator=non_negative)
    timeout: float = attrs.field(default=2.0, validator=positive)  # per forwarded query
    max_pending: int = attrs.field(default=1000, validator=positive)  # forwarded, unanswered


@attrs.frozen
class InterceptConfig:
    """Transparent interception: the listeners `sofamesh-init`'s rules redirect to."""

    outbound: Address | None = Address("127.0.0.1", 15001)  # the app's redirected calls
    inbound: Address | None = None  # redirected calls to the app's ports (e.g. 0.0.0.0:15006)
    unknown: Literal["pass", "block"] = "pass"  # destinations that are no mesh service
    domain: str = attrs.field(default="mesh.local", validator=dns_domain)  # <service>.<domain>
    vip_cidr: str = attrs.field(default="240.240.0.0/16", validator=cidr)  # virtual IPs
    refresh: float = attrs.field(default=5.0, validator=positive)  # re-reading the registry
    max_services: int = attrs.field(default=10_000, validator=positive)
    sniff_timeout: float = attrs.field(default=5.0, validator=positive)  # for the first bytes
    connect_timeout: float = attrs.field(default=5.0, validator=positive)  # relayed TCP
    # App addresses (pod IP and port) whose redirected mTLS calls get their own inbound servers.
    max_app_ports: int = attrs.field(default=64, validator=positive)
    dns: DnsProxyConfig | None = None
    limits: LimitsConfig = attrs.field(factory=LimitsConfig)


@attrs.frozen
class OverloadConfig:
    """The overload actions on memory (transport/reclaim.py; Envoy's
    `reset_high_memory_stream` and `shrink_heap`)."""

    # Past reset_above x buffer_budget, the biggest holders of buffers are reset until
    # what they held brings the total under reset_to x buffer_budget.
    reset_above: float = attrs.field(default=1.0, validator=positive_finite)
    reset_to: float = attrs.field(default=0.8, validator=positive_finite)
    check_interval: float = attrs.field(default=0.25, validator=positive_finite)
    # While nothing is buffered, the checks back off to this (never under check_interval).
    idle_check_interval: float = attrs.field(default=2.0, validator=positive_finite)
    # After this many bytes freed since the last trim, the heap is trimmed (glibc only),
    # at most once per trim_interval.
    trim_heap: bool = True
    trim_after_bytes: int = attrs.field(default=32 * 1024 * 1024, validator=positive)
    trim_interval: float = attrs.field(default=5.0, validator=positive_finite)

    def __attrs_post_init__(self) -> None:
        if self.reset_to > self.reset_above:
            raise ValueError(f"reset_to ({self.reset_to}) must not be above reset_above "
                             f"({self.reset_above})")  # fmt: skip


@attrs.frozen
class MeshConfig:
    app: str = attrs.field(validator=app_name)
    mode: Mode = "sdk"
    registry: str = "file:///var/tmp/sofamesh"
    admin: Address | None = None
    # The admin API's own limits, apart from the listeners', so a flood of those leaves
    # /ready and /stats answering.
    admin_limits: LimitsConfig = attrs.field(factory=lambda: LimitsConfig(max_connections=1000))
    sidecar: Address = Address("127.0.0.1", 15000)  # sidecar mode: the local sidecar's admin API
    metadata: EndpointMeta = attrs.field(factory=EndpointMeta)
    policy: PolicyConfig = attrs.field(factory=PolicyConfig)
    services: dict[str, PolicyConfig] = attrs.field(factory=dict)  # per-service overrides
    inbound: tuple[ListenerConfig, ...] = ()
    outbound: tuple[ListenerConfig, ...] = ()
    drain_timeout: float = attrs.field(default=10.0, validator=non_negative)
    # sidecar: the Unix socket a new process connects to in order to take over the listeners
    # (`--upgrade`; default: $SOFAMESH_STATE_DIR/upgrade/<app>.sock)
    upgrade_socket: str | None = None
    # Bytes held in request and response buffers across the process; past it, new requests
    # are shed (HTTP 503, HTTP/2 REFUSED_STREAM, Bolt busy); transport/budget.py.
    buffer_budget: int = attrs.field(default=256 * 1024 * 1024, validator=positive)
    # Every protocol's code at start instead of with its first use (protocols/lazy.py).
    preload_protocols: bool = False
    overload: OverloadConfig = attrs.field(factory=OverloadConfig)
    # Per-name state (upstream/cluster.py): clusters kept at most, and how long an unused
    # one lives (dropped after one to two of these periods).
    max_clusters: int = attrs.field(default=1000, validator=positive)
    cluster_idle_timeout: float = attrs.field(default=600.0, validator=positive)
    rules: dict[str, Any] | None = None  # the governance rules document, inline
    rules_file: str | None = None  # or a file holding it, watched for changes
    rules_key: str | None = None  # or a document in the registry (etcd, ZooKeeper), watched
    # sidecar: where the last good rules from rules_file/rules_key are kept, to start on
    # them if the source is invalid at start (default: DEFAULT_STATE/rules/<app>.json)
    rules_last_good: str | None = None
    local_api: LocalApiConfig = attrs.field(factory=LocalApiConfig)
    control: ControlUrls | None = None  # or the control plane's (sofamesh.control.agent)
    control_token: str | None = None  # its data-plane token (or SOFAMESH_CONTROL_TOKEN)
    workspace: str | None = None  # the control plane's workspace this app belongs to
    # CA file that verifies an https:// control plane (default: the system's CAs)
    control_ca: str | None = attrs.field(default=None, validator=readable_file)
    tls: TlsConfig = attrs.field(factory=TlsConfig)
    intercept: InterceptConfig | None = None  # the sidecar's transparent mode
    tracing: TracingConfig = attrs.field(factory=TracingConfig)  # docs/observability.md
    metrics: MetricsConfig = attrs.field(factory=MetricsConfig)
    registry_apis: RegistryApisConfig = attrs.field(factory=RegistryApisConfig)
    # sidecar: processes serving the listeners (sidecar/workers.py); 1 is one process, as
    # ever. More: a main process (admin, registry, control plane) and this many workers.
    workers: int = attrs.field(default=1, validator=worker_count)
    # sidecar, worker_count > 1: seconds a worker gets to answer the main process's liveness
    # ping; one that does not (stopped, stuck) is killed and started again.
    worker_liveness_timeout: float = attrs.field(default=30.0, validator=positive_finite)

    def policy_for(self, service: str) -> PolicyConfig:
        return self.services.get(service, self.policy)

    @property
    def last_good_rules_path(self) -> str:
        return self.rules_last_good or f"{DEFAULT_STATE}/rules/{self.app}.json"
