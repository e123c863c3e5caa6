"""What the registry APIs ask of the mesh: publish a registration, look a service up.

A registration is published as the sidecar's own registrations are
(`Sidecar.register`): the endpoint is the sidecar's inbound listener, and the
app's own address is the inbound upstream of that service, so callers reach
the app through its sidecar.

A lookup answers with addresses on *this* sidecar, so the caller's traffic
takes its own sidecar's outbound chain (governance applies). A registry
client calls an instance as `http://host:port/...`, sending `Host: host:port`:
nothing in the request names the service. So each service looked up gets an
outbound listener of its own on a loopback port (`PinnedOutbound`), which
carries every request to that service; the instances listed are the mesh's
endpoints (ids, versions, zones), each at that port.
"""

from __future__ import annotations

import logging

import anyio
import anyio.abc

from sofamesh.chain import Handler
from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.config import Address
from sofamesh.config.local_api import allows_service, allows_upstream
from sofamesh.config.model import RegistryApisConfig
from sofamesh.endpoint import Endpoint
from sofamesh.protocols.http.mapping import request_to_invocation, result_to_response
from sofamesh.protocols.http.server import ConnInfo
from sofamesh.protocols.http.support import http1_server
from sofamesh.sidecar.app import Sidecar
from sofamesh.sidecar.guard import Refused
from sofamesh.sidecar.registry_apis.book import Instance

log = logging.getLogger("sofamesh.registry_apis")

LOOPBACK = "127.0.0.1"
SERVICES_TTL = 1.0  # seconds a listing of the mesh's services is reused across requests


class PinnedOutbound:
    """An outbound HTTP listener's handler for one service, whatever the Host header says."""

    def __init__(self, chain: Handler, app: str, service: str) -> None:
        self._chain = chain
        self._app = app
        self._service = service

    async def __call__(self, req: HttpRequest, _conn: ConnInfo | None = None) -> HttpResponse:
        inv = request_to_invocation(req)
        inv.service = self._service
        inv.caller = self._app  # the sidecar vouches for its own app, as on any outbound hop
        return result_to_response(await self._chain(inv), self._service)


class MeshBridge:
    """Publications and lookups for the registry APIs of one sidecar."""

    def __init__(self, sidecar: Sidecar, tg: anyio.abc.TaskGroup) -> None:
        self.sidecar = sidecar
        self.config: RegistryApisConfig = sidecar.config.registry_apis
        self._tg = tg
        self._ports: dict[str, Address] = {}
        self._chain: Handler | None = None
        self._lock = anyio.Lock()
        self._services: tuple[float, list[str]] | None = None

    # -- publication ------------------------------------------------------------------------

    def check(self, inst: Instance) -> Instance:
        """Refuse what the local API would refuse; a non-loopback app address becomes loopback.

        The app is on this host (the sidecar is its own), so its address is reached on
        loopback unless `local_api.upstreams` allows the address it announced.
        """
        limits = self.sidecar.config.local_api
        published = tuple(s for lc in self.sidecar.config.inbound for s in lc.services)
        if not allows_service(limits, inst.service, published):
            raise Refused(403, f"service {inst.service!r} is not one this app may publish")
        if not allows_upstream(limits, inst.upstream):
            inst.upstream = Address(LOOPBACK, inst.upstream.port)
        return inst

    async def publish(self, inst: Instance) -> None:
        """Publish (or renew) `inst` if it serves; withdraw it if it does not."""
        sc = self.sidecar
        if not inst.serving:
            await sc.deregister(inst.service, "http")
            return
        lease = min(inst.lease, sc.config.local_api.max_lease)
        labels = {**inst.labels, "instance_id": inst.instance_id, "registry_api": inst.api}
        await sc.register(inst.service, "http", inst.upstream, sc.config.app, lease, labels)

    async def withdraw(self, inst: Instance) -> None:
        await self.sidecar.deregister(inst.service, "http")

    # -- lookups ----------------------------------------------------------------------------

    async def services(self) -> list[str]:
        """The mesh's services, read at most once a `SERVICES_TTL` (a registry scans to list)."""
        now = self.sidecar.runtime.clock.now()
        if self._services is None or now - self._services[0] >= SERVICES_TTL:
            names = await self.sidecar.runtime.registry.list_services()
            self._services = (now, list(names)[: self.config.max_services])
        return self._services[1]

    async def endpoints(self, service: str) -> tuple[Endpoint, ...]:
        """The mesh's HTTP endpoints of `service`, as the sidecar's cluster has them."""
        clusters = self.sidecar.runtime.clusters
        assert clusters is not None  # the sidecar's runtime always has them
        cluster = clusters.get(service)
        with anyio.move_on_after(self.config.lookup_timeout):
            await cluster.ready.wait()
        return tuple(e for e in cluster.endpoints if e.protocol == "http")

    async def local_address(self, service: str) -> Address | None:
        """The loopback port whose calls go to `service`; None past `max_services` ports."""
        addr = self._ports.get(service)
        if addr is not None:
            return addr
        async with self._lock:
            if service not in self._ports:
                if len(self._ports) >= self.config.max_services:
                    log.warning(
                        "max_services (%d) reached: %s not served", len(self._ports), service
                    )
                    return None
                self._ports[service] = await self._open_port(service)
        return self._ports[service]

    async def _open_port(self, service: str) -> Address:
        if self._chain is None:
            self._chain = self.sidecar.runtime.outbound_chain()
        listener = await anyio.create_tcp_listener(local_host=LOOPBACK, local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        handler = PinnedOutbound(self._chain, self.sidecar.config.app, service)
        await self._tg.start(http1_server(handler, None).serve, listener)
        return Address(LOOPBACK, port)
