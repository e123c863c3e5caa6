"""What a `Runtime` builds only when its config asks for it: mutual TLS on mesh hops, the
tracer and its span buffer, OTLP export.

Each imports its machinery in the branch that uses it: a mesh without `tls:` never loads
identities (and `datetime` with them) nor, without a control plane issuing its
certificate, `cryptography`; one without tracing never loads the tracer.
"""

from __future__ import annotations

import os
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import anyio.abc

from sofamesh.clock import Clock
from sofamesh.config.model import MeshConfig
from sofamesh.config.structure import ConfigError
from sofamesh.protocols import ProtocolSupport
from sofamesh.stats import Stats

if TYPE_CHECKING:
    from sofamesh.tracing.export import SpanBuffer
    from sofamesh.tracing.tracer import Tracer
    from sofamesh.transport.tls_listener import MeshTls


def mesh_tls(
    config: MeshConfig, stats: Stats, protocols: dict[str, ProtocolSupport]
) -> MeshTls | None:
    """Mutual TLS on mesh hops when configured: every client calls mTLS endpoints over it."""
    cfg = config.tls
    if not cfg.enabled:
        return None
    # Here: identities load datetime with them, which a mesh without TLS never needs.
    from sofamesh.security.identity import IdentityError, IdentityFiles, IdentitySource

    try:
        if cfg.cert is None:  # issued by the control plane: its agent enrolls before serving
            # enroll needs cryptography (9 MB): only a mesh with tls: pays for it
            from sofamesh.security.enroll import identity_files, state_dir_of

            ws, app = config.workspace, config.app
            assert ws is not None
            files = identity_files(state_dir_of(os.environ), ws, app)
            source = IdentitySource(files, pending=True)
        else:
            assert cfg.key is not None and cfg.trust_bundle is not None
            source = IdentitySource(IdentityFiles(cfg.cert, cfg.key, cfg.trust_bundle))
    except IdentityError as exc:
        raise ConfigError([f"tls: {exc}"]) from None
    from sofamesh.transport.tls_listener import MeshTls  # TLS's machinery, with `tls:`

    tls = MeshTls(cfg.mode, source, count=stats.incr)
    for proto in protocols.values():
        proto.use_tls(tls.client)
    return tls


def tracer_of(config: MeshConfig, clock: Clock) -> tuple[Tracer, SpanBuffer] | None:
    """Spans when `tracing.enabled`: the tracer, and the bounded buffer export drains."""
    cfg = config.tracing
    if not cfg.enabled:
        return None
    # Here: a sidecar without tracing never needs these.
    from sofamesh.tracing import otlp
    from sofamesh.tracing.export import SpanBuffer
    from sofamesh.tracing.tracer import Tracer

    if cfg.otlp_endpoint is not None and not otlp.available():
        problem = "tracing.otlp_endpoint: needs the otel extra (pip install 'sofamesh[otel]')"
        raise ConfigError([problem])
    spans = SpanBuffer(cfg.max_buffered_spans)
    return Tracer(cfg, clock, spans.put, config.app), spans


async def start_export(
    config: MeshConfig,
    tracer: Tracer | None,
    spans: SpanBuffer | None,
    protocols: dict[str, ProtocolSupport],
    stack: AsyncExitStack,
    tg: anyio.abc.TaskGroup,
) -> None:
    """OTLP export, when configured, over the runtime's own HTTP/1.1 client; the last
    spans go out as `stack` closes, before `tg` ends."""
    cfg = config.tracing
    if cfg.otlp_endpoint is None or tracer is None or spans is None:
        return
    from sofamesh.tracing import otlp
    from sofamesh.tracing.export import SpanExport

    http: Any = protocols["http"]
    exporter = otlp.OtlpHttpExporter(
        cfg.otlp_endpoint, http.pool.send, cfg.service_name or config.app, tracer.wall_offset
    )
    export = SpanExport(
        spans, exporter, interval=cfg.export_interval, batch=cfg.max_export_batch,
        timeout=cfg.export_timeout,
    )  # fmt: skip
    await tg.start(export.run)
    stack.push_async_callback(export.aclose)
