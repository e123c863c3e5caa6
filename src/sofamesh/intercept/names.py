"""Which mesh service a redirected connection or a name is for: the service directory.

A destination maps to a service by its virtual IP (`vips`), or by the address of a
known endpoint; a name (an HTTP `Host`, a gRPC `:authority`, a DNS question) by
`<service>.<domain>`, by the bare service name, or by a virtual IP. The
directory re-reads the registry's services every `refresh` seconds; lookups are
plain dictionary reads on the connection path.
"""

from __future__ import annotations

import ipaddress
import logging

import anyio

from sofamesh.config.model import InterceptConfig
from sofamesh.intercept import vips
from sofamesh.registry.base import Registry

log = logging.getLogger("sofamesh.intercept")
SNAPSHOT_TIMEOUT = 1.0  # per service and refresh: a slow registry delays no lookup


class ServiceDirectory:
    def __init__(self, config: InterceptConfig) -> None:
        self.domain = config.domain.lower().rstrip(".")
        self._config = config
        self.vip_of: dict[str, str] = {}
        self._by_vip: dict[str, str] = {}
        self._by_endpoint: dict[tuple[str, int], str] = {}
        self._lower: dict[str, str] = {}  # DNS names are case-blind; services are not

    def update(self, endpoints: dict[str, set[tuple[str, int]]]) -> None:
        """Take the services (and their endpoints' addresses) the registry lists now."""
        names = sorted(endpoints)[: self._config.max_services]
        self.vip_of = vips.assign(names, self._config.vip_cidr)
        self._by_vip = {ip: name for name, ip in self.vip_of.items()}
        self._lower = {name.lower(): name for name in names}
        for name in names:  # Bolt and Dubbo's `interface:version`: named by the interface too
            if ":" in name:
                self._lower.setdefault(name.split(":", 1)[0].lower(), name)
        self._by_endpoint = {addr: name for name in names for addr in endpoints[name]}

    def service_at(self, host: str, port: int) -> str | None:
        """The service a connection to (host, port) is for, if any."""
        return self._by_vip.get(host) or self._by_endpoint.get((host, port))

    def service_named(self, name: str) -> str | None:
        """The service `name` (a Host without its port, a DNS name) means, if any."""
        name = name.rstrip(".")
        lowered = name.lower()
        if lowered.endswith("." + self.domain):
            return self._lower.get(lowered[: -len(self.domain) - 1])
        if _is_ip(name):  # a virtual IP; any other address is no name for a service
            return self._by_vip.get(name)
        return self._lower.get(lowered)

    async def refresh(self, registry: Registry) -> None:
        services = (await registry.list_services())[: self._config.max_services]
        found: dict[str, set[tuple[str, int]]] = {}
        for service in services:
            found[service] = await _addresses(registry, service)
        self.update(found)

    async def follow(self, registry: Registry) -> None:
        """Refresh forever (run in the sidecar's task group); a registry error keeps the last."""
        while True:
            try:
                await self.refresh(registry)
            except Exception as e:  # the registry's trouble must not stop interception
                log.warning("intercept: cannot read the registry's services: %s", e)
            await anyio.sleep(self._config.refresh)


async def _addresses(registry: Registry, service: str) -> set[tuple[str, int]]:
    with anyio.move_on_after(SNAPSHOT_TIMEOUT):
        async with registry.watch(service) as snapshots:
            async for snapshot in snapshots:
                return {(ep.host, ep.port) for ep in snapshot}
    return set()


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
