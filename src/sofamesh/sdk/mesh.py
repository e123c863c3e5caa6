"""The SDK front door: `async with sofamesh.open_mesh(...) as mesh:`.

One object gives an app both halves of the mesh:

- consumer: `mesh.httpx_transport()` for `httpx.AsyncClient`, or `mesh.request(...)`;
- provider: `async with mesh.serve_asgi(app, services=[...]):` serves an ASGI app
  as mesh services and publishes them.

`mode` (from config or `SOFAMESH_MODE`) decides how: in `sdk` mode the mesh
talks to the registry and to providers itself; in `sidecar` mode it calls and
registers through the local sidecar. Application code is the same in both.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import attrs

from sofamesh.chain import Handler
from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.config import Address, LimitsConfig, MeshConfig, load_config
from sofamesh.endpoint import Endpoint
from sofamesh.governance.holder import Governance
from sofamesh.model import Invocation, Result, Status
from sofamesh.protocols import HttpSupport, Server
from sofamesh.protocols.http.mapping import request_to_invocation, result_to_response
from sofamesh.registry import OpenedRegistry, Registry
from sofamesh.runtime import Composes, Runtime
from sofamesh.sdk.asgi import ASGIApp, AsgiTerminal, asgi_lifespan
from sofamesh.sdk.control import SidecarClient, SidecarUnavailable

if TYPE_CHECKING:  # optional extras (httpx) and modules that import this one
    from sofamesh.sdk.bolt import BoltConsumer
    from sofamesh.sdk.dubbo import DubboConsumer
    from sofamesh.sdk.grpc import MeshChannel
    from sofamesh.sdk.httpx import MeshTransport


@attrs.frozen
class Provider:
    """A running provider: where it listens and what it published."""

    address: Address
    services: tuple[str, ...]


class Mesh:
    """An app's handle on the mesh; create it with `open_mesh`."""

    def __init__(self, runtime: Runtime, tg: anyio.abc.TaskGroup, sidecar: SidecarClient | None):
        self.runtime = runtime
        self.config: MeshConfig = runtime.config
        self._tg = tg
        self._sidecar = sidecar
        self._chain = self._outbound_chain()
        self.provided: set[str] = set()  # services this app serves (for the control plane)

    @property
    def governance(self) -> Governance:
        """The rules in force (`set_fallback`, `apply`, `status()`); see docs/governance.md."""
        return self.runtime.governance

    @property
    def mode(self) -> str:
        return self.config.mode

    def _outbound_chain(self) -> Handler:
        # The runtime composes what its mode says: direct, or via the local sidecar.
        return self.runtime.outbound_chain(via=self._via_sidecar if self._sidecar else None)

    async def _via_sidecar(self, inv: Invocation) -> Result:
        assert self._sidecar is not None
        try:
            addr = self._sidecar.outbound_for(inv.protocol)
        except SidecarUnavailable as e:
            return Result.failure(Status.UNAVAILABLE, str(e))
        return await self.runtime.send(addr.host, addr.port, inv)

    # -- consumer ---------------------------------------------------------------------------

    async def invoke(self, inv: Invocation) -> Result:
        """Run one invocation through the outbound chain (the lowest-level call)."""
        inv.caller = self.config.app
        return await self._chain(inv)

    async def request(
        self,
        service: str,
        method: str,
        target: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        timeout: float | None = None,
    ) -> HttpResponse:
        """One HTTP call to `service`; mesh failures come back as 5xx/4xx responses."""
        raw = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
        ]
        if not any(k == b"host" for k, _ in raw):
            raw.append((b"host", service.encode("latin-1")))
        # The httpx transport's conversion, so both mark the same calls idempotent (retried
        # after a reset) and read the same headers.
        inv = request_to_invocation(
            HttpRequest(method=method, target=target, headers=raw, body=body)
        )
        inv.service = service
        if timeout is not None:
            inv.deadline = self.runtime.clock.now() + timeout
        return result_to_response(await self.invoke(inv), service)

    def grpc_channel(self, service: str | None = None) -> MeshChannel:
        """A grpclib-compatible channel through the mesh (`sofamesh.sdk.grpc.MeshChannel`).

        Each call's service is its path's `package.Service`, or `service` if given.
        """
        from sofamesh.sdk.grpc import MeshChannel

        return MeshChannel(self, service)

    @property
    def outbound_chain(self) -> Handler:
        """The outbound chain every consumer's call runs through (without `invoke`'s caller)."""
        return self._chain

    def start_soon(self, func: Callable[..., Coroutine[Any, Any, object]], *args: object) -> None:
        """Run `func(*args)` in a task the mesh owns: cancelled when the mesh closes."""
        self._tg.start_soon(func, *args)

    def bolt_consumer(self, interface: str, version: str = "1.0", **options: Any) -> BoltConsumer:
        """A SOFARPC consumer of `interface:version` (`sofamesh.sdk.bolt.BoltConsumer`)."""
        from sofamesh.sdk.bolt import BoltConsumer

        return BoltConsumer(self, interface, version, **options)

    def dubbo_consumer(self, interface: str, **options: Any) -> DubboConsumer:
        """A Dubbo 2 consumer of `interface` (`sofamesh.sdk.dubbo.DubboConsumer`)."""
        from sofamesh.sdk.dubbo import DubboConsumer

        return DubboConsumer(self, interface, **options)

    def httpx_transport(self) -> MeshTransport:
        """An `httpx.AsyncBaseTransport` that sends every request through the mesh."""
        from sofamesh.sdk.httpx import MeshTransport

        return MeshTransport(self)

    # -- provider ---------------------------------------------------------------------------

    @asynccontextmanager
    async def serve_asgi(
        self,
        app: ASGIApp,
        services: list[str] | tuple[str, ...],
        *,
        listen: str = "127.0.0.1:0",
        advertise: str | None = None,
        lifespan: bool = True,
    ) -> AsyncIterator[Provider]:
        """Serve `app` as `services`, published while the block runs, unpublished after."""
        if not services:
            raise ValueError("serve_asgi needs at least one service name")
        names = tuple(services)
        async with (
            asgi_lifespan(app) if lifespan else nullcontext(),
            self.provide(
                lambda address: self._asgi_server(app, names, address),
                names,
                "http",
                listen=listen,
                advertise=advertise,
            ) as provider,
        ):
            yield provider

    def serve_grpc(
        self,
        handlers: list[Any] | tuple[Any, ...],
        *,
        services: list[str] | tuple[str, ...] | None = None,
        listen: str = "127.0.0.1:0",
        advertise: str | None = None,
    ) -> AbstractAsyncContextManager[Provider]:
        """Serve grpclib handlers, publishing each gRPC service name they implement."""
        from sofamesh.sdk.grpc import GrpclibTerminal, provider_server

        terminal = GrpclibTerminal(handlers, self.runtime.clock)
        names = tuple(services or terminal.services)
        if not names:
            raise ValueError("serve_grpc needs handlers with at least one method")
        return self.provide(
            lambda _address: provider_server(self, terminal, self.inbound_limits),
            names,
            "grpc",
            listen=listen,
            advertise=advertise,
        )

    def serve_bolt(
        self, obj: object, interface: str, **options: Any
    ) -> AbstractAsyncContextManager[Provider]:
        """Serve `obj`'s methods as a SOFARPC service (`sofamesh.sdk.bolt.serve_bolt`)."""
        from sofamesh.sdk.bolt import serve_bolt

        return serve_bolt(self, obj, interface, **options)

    def serve_dubbo(self, obj: object, **options: Any) -> AbstractAsyncContextManager[Provider]:
        """Serve `obj`'s methods as a Dubbo 2 service (`sofamesh.sdk.dubbo.serve_dubbo`)."""
        from sofamesh.sdk.dubbo import serve_dubbo

        return serve_dubbo(self, obj, **options)

    @property
    def inbound_limits(self) -> LimitsConfig | None:
        """The limits a provider's server enforces: the first inbound listener's, if any."""
        return self.config.inbound[0].limits if self.config.inbound else None

    @asynccontextmanager
    async def provide(
        self,
        server_for: Callable[[Address], Server],
        services: tuple[str, ...],
        protocol: str,
        *,
        listen: str = "127.0.0.1:0",
        advertise: str | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> AsyncIterator[Provider]:
        """What every provider does: listen, serve, publish `services`; undone in reverse.

        `server_for` gets the bound address (port 0 resolved) and returns the server;
        `meta` is published with the endpoints (in SDK mode: Dubbo's `methods`, say).
        """
        bind = Address.parse(listen)
        async with AsyncExitStack() as stack:
            listener = await anyio.create_tcp_listener(local_host=bind.host, local_port=bind.port)
            address = Address(bind.host, listener.extra(anyio.abc.SocketAttribute.local_port))
            await self._serve(stack, server_for(address), self._secured(listener, protocol))
            public = Address.parse(advertise) if advertise else address
            await self._publish(stack, services, address, public, protocol, meta or {})
            yield Provider(address=public, services=services)

    def _secured(self, listener: Any, protocol: str) -> Any:
        """A provider's listener, under mTLS if on (in sidecar mode, the sidecar's hop is local)."""
        tls = self.runtime.tls
        if tls is None or self._sidecar is not None:
            return listener
        alpn = self.runtime.protocols[protocol].alpn
        return tls.listener(listener, alpn, f"{protocol} provider")

    async def _serve(self, stack: AsyncExitStack, server: Server, listener: Any) -> None:
        """Run `server` until `stack` closes: then drain it, for `drain_timeout` at most.

        Calls still running after that (an app that never answers) are cut
        off, so leaving a provider's block always ends.
        """
        scope = anyio.CancelScope()

        async def serve(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            with scope:
                await server.serve(listener, task_status=task_status)

        async def stop() -> None:
            with anyio.move_on_after(self.config.drain_timeout):
                await server.drain()
            scope.cancel()

        await self._tg.start(serve)
        stack.push_async_callback(stop)

    def _asgi_server(self, app: ASGIApp, services: tuple[str, ...], address: Address) -> Server:
        rt = self.runtime
        chain = rt.inbound_chain(AsgiTerminal(app, (address.host, address.port)))
        default = services[0]

        def route(service: str) -> Handler:
            # The app answers whatever reaches its port; stats use a service it serves.
            return chain if service in services else _renamed(chain, default)

        return rt.protocols["http"].inbound_server(route, self.inbound_limits)

    async def _publish(
        self,
        stack: AsyncExitStack,
        services: tuple[str, ...],
        local: Address,
        public: Address,
        protocol: str,
        extra: Mapping[str, str],
    ) -> None:
        self.provided.update(services)
        if self._sidecar is not None:
            for s in services:
                await self._sidecar.publish(s, protocol, local)
                stack.push_async_callback(self._sidecar.unpublish, s, protocol)
            return
        meta = self.config.metadata
        tls, tls_config = self.runtime.tls, self.config.tls
        for s in services:
            ep = Endpoint(
                service=s,
                host=public.host,
                port=public.port,
                protocol=protocol,
                app=self.config.app,
                version=meta.version,
                zone=meta.zone,
                weight=meta.weight,
                tags=meta.tags,
                meta={
                    **extra,
                    "mode": "sdk",
                    "pid": str(os.getpid()),
                    **(tls.meta(tls_config.mode_for(s)) if tls is not None else {}),
                },
            )
            await self.runtime.registry.publish(ep)
            stack.push_async_callback(_shielded_unpublish, self.runtime.registry, ep)


def _renamed(chain: Handler, service: str) -> Handler:
    async def call(inv: Invocation) -> Result:
        inv.service = service
        return await chain(inv)

    return call


async def _shielded_unpublish(registry: Registry, ep: Endpoint) -> None:
    with anyio.CancelScope(shield=True):
        await registry.unpublish(ep)


@asynccontextmanager
async def open_mesh(
    config: MeshConfig | str | os.PathLike[str] | Mapping[str, Any] | None = None,
    *,
    registry: OpenedRegistry | None = None,
    **overrides: Any,
) -> AsyncIterator[Mesh]:
    """Open the mesh for this app; closes listeners and unpublishes on exit.

    `config` is a `MeshConfig`, a path to YAML/JSON, a mapping, or None (then
    `SOFAMESH_CONFIG` and the other `SOFAMESH_*` variables are read).
    """
    cfg = config if isinstance(config, MeshConfig) else load_config(config, **overrides)
    try:
        async with Runtime(cfg, composes=Composes.for_mode(cfg.mode), registry=registry) as rt:
            sidecar = None
            if cfg.mode == "sidecar":
                http = rt.protocols["http"]
                assert isinstance(http, HttpSupport)
                sidecar = SidecarClient(http.pool, cfg.sidecar, cfg.app)
                await (
                    sidecar.connect()
                )  # outside the task group: a failure reaches the caller as is
            async with anyio.create_task_group() as tg:
                if sidecar is not None:
                    sidecar.start_renewing(tg)
                mesh = Mesh(rt, tg, sidecar)
                if cfg.control is not None:  # report to the control plane, take its rules
                    from sofamesh.control.hosts import MeshHost, run_agent

                    await tg.start(run_agent, cfg, MeshHost(mesh))
                try:
                    yield mesh
                finally:
                    tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The mesh's own tasks do not fail; a group holding one error came from the
        # block (or from connecting): raise it as it is, not wrapped by our task groups.
        leaf = _single(group)
        if leaf is None:
            raise
        raise leaf from None


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc
