"""The sidecar's publications: its inbound listeners' services, and the upstreams SDKs in
sidecar mode register through the local API, each published under the sidecar's inbound
address and withdrawn when the sidecar fails its health check, drains or a registration's
lease runs out.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import anyio
import attrs

from sofamesh.config import Address, MeshConfig
from sofamesh.endpoint import Endpoint
from sofamesh.runtime import Runtime

log = logging.getLogger("sofamesh.sidecar")

Labels = Mapping[str, str] | None  # an app's endpoint metadata (registry APIs)


@attrs.define
class Registration:
    """An upstream that an SDK in sidecar mode registered through the local API."""

    service: str
    protocol: str
    upstream: Address
    app: str
    expires: float  # on the sidecar's clock; renewed by the SDK


class Publishing:
    """What the sidecar publishes, and the local API's registrations (a part of `Sidecar`)."""

    config: MeshConfig
    runtime: Runtime
    bound: dict[str, Address]  # "inbound[0]" -> actual address (port 0 resolved)
    draining: bool
    healthy: bool
    registrations: dict[tuple[str, str], Registration]
    _published: dict[str, Endpoint]
    _registered: anyio.Event | None  # set by a registration, for the expiry

    def inbound_address(self, protocol: str, service: str = "") -> Address | None:
        """Where remote callers reach this sidecar for `service` over `protocol`.

        The listener that lists the service, else the first one of that protocol.
        """
        candidates = [
            (i, lc) for i, lc in enumerate(self.config.inbound) if lc.protocol == protocol
        ]
        candidates.sort(key=lambda c: service not in c[1].services)
        for i, lc in candidates:
            return pod_reachable(lc.advertise or self.bound.get(f"inbound[{i}]", lc.listen))
        return None

    def _endpoint(
        self, service: str, protocol: str, app: str | None = None, labels: Labels = None
    ) -> Endpoint:
        """`labels`: the app's own `version`, `zone` and other metadata, over the config's."""
        labels = dict(labels or {})
        addr = self.inbound_address(protocol, service)
        if addr is None:
            raise ValueError(
                f"this sidecar has no inbound {protocol} listener to publish {service} on"
            )
        meta = self.config.metadata
        return Endpoint(
            service=service,
            host=addr.host,
            port=addr.port,
            protocol=protocol,
            app=app or self.config.app,
            version=labels.pop("version", meta.version),
            zone=labels.pop("zone", meta.zone),
            weight=meta.weight,
            tags=meta.tags,
            meta={**labels, **self._endpoint_meta(service)},
        )

    def _endpoint_meta(self, service: str) -> dict[str, str]:
        """Published with every endpoint: a sidecar, and whether (and as whom) it takes mTLS."""
        tls = self.runtime.tls
        if tls is None:
            return {"mode": "sidecar"}
        return {"mode": "sidecar", **tls.meta(self.config.tls.mode_for(service))}

    async def _publish_static(self) -> None:
        for lc in self.config.inbound:
            for service in lc.services:
                await self.publish(self._endpoint(service, lc.protocol))

    async def publish(self, ep: Endpoint) -> None:
        if self.draining or not self.healthy:
            self._published[ep.key] = ep  # remembered; published again on /healthcheck/ok
            return
        await self.runtime.registry.publish(ep)
        self._published[ep.key] = ep
        log.info("published %s at %s", ep.service, ep.address)

    async def unpublish(self, ep: Endpoint) -> None:
        self._published.pop(ep.key, None)
        await self.runtime.registry.unpublish(ep)

    async def _unpublish_all(self) -> None:
        for ep in list(self._published.values()):
            await self.runtime.registry.unpublish(ep)

    async def set_healthy(self, healthy: bool) -> None:
        """`/healthcheck/fail` withdraws every publication; `/healthcheck/ok` restores them."""
        self.healthy = healthy
        for ep in list(self._published.values()):
            if healthy:
                await self.runtime.registry.publish(ep)
            else:
                await self.runtime.registry.unpublish(ep)

    async def republish(self) -> None:
        """Publish every endpoint again (after a take-over: the entries become ours alone)."""
        for ep in list(self._published.values()):
            try:
                await self.runtime.registry.publish(ep)
            except Exception as exc:  # a registry outage: its own retries publish it later
                log.warning("could not publish %s again: %s", ep.service, exc)

    async def register(
        self,
        service: str,
        protocol: str,
        upstream: Address,
        app: str,
        lease: float,
        labels: Labels = None,
    ) -> Endpoint:
        ep = self._endpoint(service, protocol, app, labels)
        now = self.runtime.clock.now()
        fresh = (service, protocol) not in self.registrations
        self.registrations[(service, protocol)] = Registration(
            service, protocol, upstream, app, now + lease
        )
        if self._registered is not None:
            self._registered.set()  # the expiry has something to watch
        if fresh or ep.key not in self._published:
            await self.publish(ep)
        return ep

    async def deregister(self, service: str, protocol: str) -> bool:
        reg = self.registrations.pop((service, protocol), None)
        if reg is None:
            return False
        await self.unpublish(self._endpoint(service, protocol, reg.app))
        return True

    async def _expire_registrations(self) -> None:
        """Once a second, withdraw the registrations whose lease ran out; with none, sleep
        until one is made (an idle sidecar does not wake for nothing)."""
        while True:
            if not self.registrations:
                self._registered = anyio.Event()
                await self._registered.wait()
            await anyio.sleep(1.0)
            now = self.runtime.clock.now()
            for key, reg in list(self.registrations.items()):
                if reg.expires < now:
                    log.warning(
                        "registration of %s by %s expired: withdrawing it", reg.service, reg.app
                    )
                    await self.deregister(*key)


def pod_reachable(addr: Address) -> Address:
    """`addr`, or when it is a wildcard (0.0.0.0, ::) in a Kubernetes pod, the pod's IP there
    (`POD_IP`, from the Downward API): a wildcard is where to listen, not where to call."""
    pod_ip = os.environ.get("POD_IP")
    if pod_ip and addr.host in ("0.0.0.0", "::"):
        return Address(pod_ip, addr.port)
    return addr
