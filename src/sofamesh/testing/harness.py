"""An in-memory mesh for unit tests: no processes, no sockets (grpclib's `ChannelFor` shape).

    async with mesh_for(app, services=["com.example.Orders"], rules=...) as h:
        async with h.client() as client:               # an httpx client through the mesh
            r = await client.get("/orders/1")

The consumer is a real SDK `Mesh`: its outbound chain (discovery on a private `memory://` hub,
governance, timeout, retries, balancing) is the one an app runs. Only the last step differs: the
terminal hands the call, mapped to the HTTP request a real client would send and back, straight
to each provider's real inbound chain (stats, deadline, inbound governance) and ASGI app.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import httpx

from sofamesh.chain import Handler
from sofamesh.config import load_config
from sofamesh.endpoint import Endpoint
from sofamesh.filters.timeout import timed_out
from sofamesh.governance.rules import parse_rules
from sofamesh.model import Invocation, Result, Status
from sofamesh.protocols.http.mapping import (
    invocation_to_request,
    parse_timeout_ms,
    request_to_invocation,
    response_to_result,
    result_to_response,
)
from sofamesh.registry.memory import MemoryHub, MemoryRegistry
from sofamesh.runtime import Runtime
from sofamesh.sdk.asgi import ASGIApp, AsgiTerminal, asgi_lifespan
from sofamesh.sdk.mesh import Mesh

HOST = "memory"  # the host every in-memory endpoint is published under


class MemoryNetwork:
    """Addresses -> inbound chains; what a socket would reach, without the socket."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, int], Handler] = {}
        self._ports = itertools.count(1)

    def bind(self, handler: Handler) -> int:
        port = next(self._ports)
        self.routes[(HOST, port)] = handler
        return port

    def unbind(self, port: int) -> None:
        self.routes.pop((HOST, port), None)

    async def deliver(self, host: str, port: int, inv: Invocation, now: float) -> Result:
        """One HTTP hop: the request a client would send, served as a listener would."""
        handler = self.routes.get((host, port))
        if handler is None:
            return Result.failure(Status.CONNECT_FAILED, f"{inv.service}: nothing at {host}:{port}")
        if inv.protocol != "http":
            return Result.failure(Status.BAD_REQUEST, "the in-memory harness carries HTTP only")
        remote = request_to_invocation(invocation_to_request(inv, now))
        timeout = parse_timeout_ms(remote.headers)
        if timeout is None:
            result = await handler(remote)
        else:
            remote.deadline = now + timeout
            with anyio.move_on_after(timeout):
                result = await handler(remote)
                return response_to_result(result_to_response(result, remote.service))
            return timed_out(inv, timeout)
        return response_to_result(result_to_response(result, remote.service))


class MemoryRuntime(Runtime):
    """A `Runtime` whose client terminal is the in-memory network."""

    def __init__(self, config: Any, network: MemoryNetwork, hub: MemoryHub) -> None:
        super().__init__(config, registry=MemoryRegistry(hub))
        self.network = network

    def send(self, host: str, port: int, inv: Invocation) -> Awaitable[Result]:
        return self.network.deliver(host, port, inv, self.clock.now())


class Harness:
    """The consumer mesh and the providers' runtimes of one `mesh_for` block."""

    def __init__(self, consumer: Mesh, providers: list[Runtime], services: Sequence[str]) -> None:
        self.consumer = consumer
        self.providers = providers
        self.services = tuple(services)

    def client(self, **options: Any) -> httpx.AsyncClient:
        """An httpx client through the consumer mesh, based at the first service."""
        options = {"base_url": f"http://{self.services[0]}", **options}
        return httpx.AsyncClient(transport=self.consumer.httpx_transport(), **options)

    def set_rules(self, document: dict[str, Any] | None) -> None:
        """Put `document` in force on the consumer (outbound rules) at once."""
        self.consumer.governance.apply(parse_rules(document or {}), origin="sofamesh.testing")

    def set_provider_rules(self, document: dict[str, Any] | None) -> None:
        """Put `document` in force on every provider (inbound rules) at once."""
        doc = parse_rules(document or {})
        for rt in self.providers:
            rt.governance.apply(doc, origin="sofamesh.testing")


@asynccontextmanager
async def mesh_for(
    app: ASGIApp,
    services: Sequence[str],
    *,
    rules: dict[str, Any] | None = None,
    provider_rules: dict[str, Any] | None = None,
    instances: int = 1,
    consumer_app: str = "consumer",
    config: dict[str, Any] | None = None,
) -> AsyncIterator[Harness]:
    """A consumer SDK mesh wired to `instances` in-memory providers of `app` as `services`."""
    try:
        cfg = {"app": consumer_app, **(config or {})}
        async with _wired(app, services, rules, provider_rules, instances, cfg) as h:
            yield h
    except BaseExceptionGroup as group:
        # The harness's own tasks do not fail: a lone error came from the block; raise
        # it as it is, not wrapped in one group per runtime.
        leaf = single_error(group)
        if leaf is None:
            raise
        raise leaf from None


def single_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one error inside nested groups of one, or None."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc


@asynccontextmanager
async def _wired(
    app: ASGIApp,
    services: Sequence[str],
    rules: dict[str, Any] | None,
    provider_rules: dict[str, Any] | None,
    instances: int,
    config: dict[str, Any] | None,
) -> AsyncIterator[Harness]:
    network, hub = MemoryNetwork(), MemoryHub()
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(asgi_lifespan(app))
        providers = []
        for i in range(instances):
            cfg = {"app": "provider", "registry": "memory://", "rules": provider_rules}
            rt = await stack.enter_async_context(MemoryRuntime(_config(cfg), network, hub))
            port = network.bind(rt.inbound_chain(AsgiTerminal(app, (HOST, i + 1))))
            stack.callback(network.unbind, port)
            for service in services:
                await rt.registry.publish(_endpoint(service, port, "provider"))
            providers.append(rt)
        cfg = {"registry": "memory://", "rules": rules, **(config or {})}
        consumer = await stack.enter_async_context(MemoryRuntime(_config(cfg), network, hub))
        tg = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(tg.cancel_scope.cancel)
        yield Harness(Mesh(consumer, tg, None), providers, services)


def _config(data: dict[str, Any]) -> Any:
    return load_config({k: v for k, v in data.items() if v is not None}, env={})


def _endpoint(service: str, port: int, app: str) -> Endpoint:
    return Endpoint(service=service, host=HOST, port=port, protocol="http", app=app)
