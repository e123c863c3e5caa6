"""The parts every mesh process shares: registry, clusters, pools, stats, chains.

Both front doors build on one `Runtime`: the SDK (`sofamesh.sdk.Mesh`) and the
sidecar (`sofamesh.sidecar.Sidecar`). Composition of the chains lives here, in
one place, each filter with a line on why it sits where it does.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from sofamesh.chain import Filter, Handler, build_chain, completed
from sofamesh.clock import Clock, MonotonicClock
from sofamesh.config.model import MeshConfig, PolicyConfig
from sofamesh.config.structure import ConfigError
from sofamesh.deadlines import DeadlineWatch
from sofamesh.filters.deadline import InboundDeadlineFilter
from sofamesh.filters.stats import Known, StatsFilter, known_unless_no_endpoint
from sofamesh.filters.timeout import TimeoutFilter, timed_out
from sofamesh.governance.compose import (
    composition_key,
    inbound_filters,
    outbound_filters,
    retry_filter,
)
from sofamesh.governance.holder import Governance
from sofamesh.governance.options import Options
from sofamesh.governance.source import (
    RegistryRulesSource,
    RulesSource,
    rules_source,
    watch_rules,
)
from sofamesh.model import Invocation, Result, Status
from sofamesh.protocols import ProtocolSupport
from sofamesh.protocols.lazy import Holder, lazy_protocols
from sofamesh.registry import open_registry
from sofamesh.runtime_extras import mesh_tls, start_export, tracer_of
from sofamesh.security.required import RequireMtlsFilter
from sofamesh.stats import Stats
from sofamesh.upstream.balance import BalanceFilter, ResolveFilter
from sofamesh.upstream.cluster import ClusterManager

if TYPE_CHECKING:
    from sofamesh.observability.istio import IstioMetrics, Reporter
    from sofamesh.tracing.export import SpanBuffer
    from sofamesh.tracing.span import Kind
    from sofamesh.tracing.tracer import Tracer


class Composes(enum.Enum):
    """What a runtime's outbound chain composes."""

    # Discovery, balancing and governance in this process: the SDK in sdk mode, the sidecar.
    DIRECT = "direct"
    # The SDK in sidecar mode: stats and the deadline here; the call goes to the local
    # sidecar's outbound listener, which discovers, governs and balances.
    VIA_SIDECAR = "via the local sidecar"

    @classmethod
    def for_mode(cls, mode: str) -> Composes:
        """The SDK's composition for its configured `mode`."""
        return cls.VIA_SIDECAR if mode == "sidecar" else cls.DIRECT


class Runtime:
    """Opened with `async with Runtime(config) as rt:`; owns every background task it starts.

    `composes` says what the outbound chain is made of (`Composes`); by default the
    SDK's choice for `config.mode`. The sidecar composes `Composes.DIRECT`.
    """

    def __init__(
        self,
        config: MeshConfig,
        *,
        composes: Composes | None = None,
        clock: Clock | None = None,
        registry: Any = None,
    ) -> None:
        self.config = config
        self.composes = composes if composes is not None else Composes.for_mode(config.mode)
        self.clock: Clock = clock or MonotonicClock()
        self.stats = Stats(
            max_services=config.metrics.max_services, max_callers=config.metrics.max_callers
        )
        self._registry_override = registry
        self.registry: Any = None
        self.clusters: ClusterManager | None = None
        # A stand-in for each protocol loaded on first use (protocols/lazy.py), swapped for
        # the real support here by that use; the holder keeps the real ones open.
        self._holder = Holder()
        self.protocols: dict[str, ProtocolSupport] = lazy_protocols(
            config.policy, self.clock, self._holder, preload=config.preload_protocols
        )
        self._gateway_codes = {name: p.gateway_codes for name, p in self.protocols.items()}
        self.governance = Governance(
            clock=self.clock, options=Options(local_zone=config.metadata.zone)
        )
        self._gov_tg: anyio.abc.TaskGroup | None = None
        self.deadlines = DeadlineWatch()
        self._stack = AsyncExitStack()
        self.tls = mesh_tls(config, self.stats, self.protocols)
        traced = tracer_of(config, self.clock)
        self.tracer: Tracer | None = None if traced is None else traced[0]
        self.spans: SpanBuffer | None = None if traced is None else traced[1]
        metrics = config.metrics
        self.istio: IstioMetrics | None = None
        if metrics.istio:  # Istio's metrics (and their module) only when configured
            from sofamesh.observability.istio import IstioMetrics

            self.istio = IstioMetrics(metrics, config.app, config.metadata.version, self.tls)

    def _rules_source(self) -> RulesSource | None:
        cfg = self.config
        if cfg.rules_key is not None:
            if not hasattr(self.registry, "watch_document"):
                raise ConfigError([f"rules_key: the registry {cfg.registry} cannot hold documents"])
            return RegistryRulesSource(self.registry, cfg.rules_key)
        return rules_source(inline=cfg.rules, path=cfg.rules_file)

    def policy_for(self, service: str) -> PolicyConfig:
        config = self.config  # MeshConfig.policy_for, without its call: read on every call
        return config.services.get(service, config.policy)

    def gateway_codes(self, protocol: str) -> frozenset[int]:
        """The status codes that mean "a gateway failed" in `protocol` (retry's gateway_error)."""
        return self._gateway_codes.get(protocol, frozenset())

    async def __aenter__(self) -> Runtime:
        stack = self._stack
        await stack.__aenter__()
        try:
            await stack.enter_async_context(self._holder)  # closes last, as the supports did
            for proto in self.protocols.values():
                await stack.enter_async_context(proto)
            # Mirrored calls run here; exit cancels them rather than waiting.
            self._gov_tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(self._gov_tg.cancel_scope.cancel)
            await self._gov_tg.start(self.deadlines.run)
            await start_export(self.config, self.tracer, self.spans, self.protocols, stack,
                               self._gov_tg)  # fmt: skip
            if self.composes is Composes.DIRECT or self._registry_override is not None:
                reg = self._registry_override or open_registry(self.config.registry)
                self.registry = await stack.enter_async_context(reg)
                self.clusters = await stack.enter_async_context(
                    ClusterManager(
                        self.registry,
                        self.policy_for,
                        self.stats,
                        self.clock,
                        protocols=frozenset().union(
                            *(p.endpoint_protocols for p in self.protocols.values())
                        ),
                        max_clusters=self.config.max_clusters,
                        idle_timeout=self.config.cluster_idle_timeout,
                    )
                )
                if self.tls is not None:  # probes reach mTLS endpoints as calls do
                    self.clusters.probe_connect = self.tls.probe_connect
            source = self._rules_source()
            if source is not None:
                await stack.enter_async_context(watch_rules(self.governance, source))
        except BaseException:
            await stack.aclose()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.__aexit__(et, e, tb)

    # -- chains -----------------------------------------------------------------------------

    def outbound_chain(
        self, extra: list[Filter] | None = None, *, via: Handler | None = None
    ) -> Handler:
        """Caller side: what `composes` says; `via` is the terminal to the local sidecar."""
        if self.composes is Composes.VIA_SIDECAR:
            assert via is not None, "a runtime composing via the local sidecar needs `via`"
            return self._via_sidecar_chain(via)
        return self._direct_chain(extra)

    def _via_sidecar_chain(self, via: Handler) -> Handler:
        """The SDK in sidecar mode: discovery and governance happen in the sidecar."""
        filters: list[Filter] = [
            *self._traced("client"),  # the app's call, the sidecar's span its child
            StatsFilter(self.stats, "outbound", self.clock),  # the app's own view of its calls
            # The caller's deadline, held by `send` (which `via` calls) and sent on to the sidecar.
            TimeoutFilter(self.policy_for, self.clock, enforce=False, policies=self.config),
        ]
        return build_chain(filters, via)

    def _direct_chain(self, extra: list[Filter] | None) -> Handler:
        """Calling providers directly (SDK mode, and the sidecar's outbound)."""
        assert self.clusters is not None, "outbound calls need the runtime's registry"
        clusters = self.clusters
        # A made-up name leaves no cluster behind: such calls share one stats row.
        known = known_unless_no_endpoint(clusters.clusters.__contains__)

        def build() -> Handler:
            gov = self.governance
            filters: list[Filter] = [
                # The service as registered (HTTP clients lowercase Host), for every rule below.
                ResolveFilter(clusters),
                # The call's span, under the app's context (or a new trace), once per call.
                *self._traced("internal"),
                # Istio's view: this app's call, as its source reports.
                *self._istio("source", known),
                # Every call counted, whatever happens below.
                StatsFilter(self.stats, "outbound", self.clock, known=known),
                # Governance: auth, routing, fallbacks, limits, breakers, faults, mirroring.
                *outbound_filters(gov, self.clock, task_group=self._gov_tg, in_use_only=True),
                *(extra or []),
                # One deadline across all retries, held by `send` below (and checked by
                # retries and balancing), so no cancel scope per call.
                TimeoutFilter(self.policy_for, self.clock, enforce=False, policies=self.config),
                # Retries (connect failures always, more per route policy), each to a new endpoint.
                retry_filter(
                    gov, self.policy_for, self.stats, self.clock, gateway_codes=self.gateway_codes
                ),
                # A span per try, naming its endpoint: the next hop's parent.
                *self._attempt_spans(),
                # Choose the endpoint (or governance's route does), feed outlier ejection.
                BalanceFilter(clusters, self.clock),
            ]
            return build_chain(filters, self._terminal())

        return self._recomposing(build)

    def inbound_chain(
        self, terminal: Handler, extra: list[Filter] | None = None, *, known: Known | None = None
    ) -> Handler:
        """Provider side: in front of the local app (an ASGI app or a TCP upstream).

        `known`: whether a call's service is one this side declared (a catch-all's are not:
        they share one stats row); None counts every name apart, up to the caps.
        """

        strict = self.config.tls.strict_services
        required = [RequireMtlsFilter(strict)] if strict else []

        def build() -> Handler:
            filters: list[Filter] = [
                *self._traced("server"),  # continue the caller's trace before anything decides
                *self._istio("destination", known),
                StatsFilter(self.stats, "inbound", self.clock, known=known),
                # Services that take verified callers only, on a permissive data plane.
                *required,
                InboundDeadlineFilter(self.clock),  # do not start work the caller gave up on
                # Auth, limits and faults on this side.
                *inbound_filters(self.governance, self.clock, in_use_only=True),
                *(extra or []),
            ]
            return build_chain(filters, terminal)

        return self._recomposing(build)

    def _traced(self, kind: Kind) -> list[Filter]:
        """The hop's tracing filter when tracing is on; nothing at all when it is off."""
        if self.tracer is None:
            return []
        from sofamesh.filters.tracing import TracingFilter  # with tracing on only

        return [TracingFilter(self.tracer, kind)]

    def _attempt_spans(self) -> list[Filter]:
        """A span per try when tracing is on; nothing at all when it is off."""
        if self.tracer is None:
            return []
        from sofamesh.filters.tracing import AttemptSpanFilter  # with tracing on only

        return [AttemptSpanFilter(self.tracer)]

    def _istio(self, reporter: Reporter, known: Known | None = None) -> list[Filter]:
        """Istio's standard metrics when `metrics.istio` is on."""
        if self.istio is None:
            return []
        from sofamesh.observability.istio import IstioFilter

        return [IstioFilter(self.istio, reporter, self.clock, known=known)]

    def _recomposing(self, build: Callable[[], Handler]) -> Handler:
        """A handler that composes its chain again when the rules in force change.

        Composing only the governance filters the rules use keeps a mesh without
        rules as cheap as one without governance; a rules change is picked up by
        the next call (in-flight calls finish on the chain they started on), and
        rule state lives in the governance, so nothing unrelated is reset.
        """
        gov = self.governance
        (state, fallbacks), chain = composition_key(gov), build()

        def call(inv: Invocation) -> Awaitable[Result]:
            nonlocal state, fallbacks, chain
            if gov.current is not state or len(gov.code_fallbacks) != fallbacks:
                (state, fallbacks), chain = composition_key(gov), build()
            return chain(inv)

        return call

    # -- terminals --------------------------------------------------------------------------

    def _terminal(self) -> Handler:
        """The outbound chain's terminal: `upstream`, or under mTLS `_upstream_tls`.

        A runtime that sends as `Runtime.send` does gets `send`'s common path inline (the
        protocol's own `send`, a call less per call); one that overrides `send` (the
        testing harness's in-memory network) is called through it.
        """
        if self.tls is not None:
            return self._upstream_tls
        if type(self).send is not Runtime.send:
            return self.upstream
        protocols, send = self.protocols, self.send

        def upstream(inv: Invocation) -> Awaitable[Result]:
            ep = inv.endpoint
            assert ep is not None
            proto = protocols.get(inv.protocol)
            if proto is not None and (inv.deadline is None or proto.enforces_deadline):
                return proto.send(ep.host, ep.port, inv)
            return send(ep.host, ep.port, inv)

        return upstream

    def upstream(self, inv: Invocation) -> Awaitable[Result]:
        """The outbound terminal: send `inv` to `inv.endpoint` in its protocol."""
        ep = inv.endpoint
        assert ep is not None
        return self.send(ep.host, ep.port, inv)

    def _upstream_tls(self, inv: Invocation) -> Awaitable[Result]:
        """The outbound terminal under mTLS: the endpoint's metadata says whether it takes TLS."""
        ep = inv.endpoint
        assert ep is not None and self.tls is not None
        self.tls.learn(ep)
        return self.send(ep.host, ep.port, inv)

    def send(self, host: str, port: int, inv: Invocation) -> Awaitable[Result]:
        """Send `inv` to one address with the client of `inv.protocol`, by `inv.deadline`."""
        proto = self.protocols.get(inv.protocol)
        if proto is None:
            detail = f"protocol {inv.protocol!r} is not supported"
            return completed(Result.failure(Status.BAD_REQUEST, detail))
        if inv.deadline is None or proto.enforces_deadline:
            return proto.send(host, port, inv)
        return self._send_by_deadline(proto, host, port, inv, inv.deadline)

    async def _send_by_deadline(
        self, proto: ProtocolSupport, host: str, port: int, inv: Invocation, deadline: float
    ) -> Result:
        """For a protocol that does not hold calls to their deadline itself: a cancel scope."""
        remaining = deadline - self.clock.now()
        if remaining <= 0:
            return Result.failure(
                Status.TIMEOUT, f"deadline for {inv.service} passed before the call"
            )
        # `deadlines.cancel_after(remaining)` inline: a plain scope armed on the watch, without
        # the wrapper object and its two frames per call.
        watch = self.deadlines
        scope = watch.scope_class()
        entry = watch.add(watch.time_in(remaining), scope)
        with scope:
            try:
                return await proto.send(host, port, inv)
            finally:
                watch.remove(entry)
        return timed_out(inv, remaining)
