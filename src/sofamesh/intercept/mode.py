"""Transparent mode as the sidecar runs it: the service directory, the DNS proxy, the listeners."""

from __future__ import annotations

import logging

import anyio.abc

from sofamesh.config.model import Address, InterceptConfig
from sofamesh.config.structure import ConfigError
from sofamesh.intercept.dns import DnsProxy
from sofamesh.intercept.inbound import TransparentInbound
from sofamesh.intercept.names import ServiceDirectory
from sofamesh.intercept.transparent import TransparentOutbound
from sofamesh.protocols.base import Server
from sofamesh.runtime import Runtime

log = logging.getLogger("sofamesh.intercept")


class TransparentMode:
    def __init__(self, runtime: Runtime, config: InterceptConfig) -> None:
        self.config = config
        self.runtime = runtime
        self.directory = ServiceDirectory(config)
        self.dns: DnsProxy | None = None
        if config.dns is not None:
            try:
                self.dns = DnsProxy(config.dns, self.directory, runtime.stats)
            except ValueError as e:  # no upstream given, and none in /etc/resolv.conf
                raise ConfigError([f"intercept.dns.upstream: {e}"]) from None

    def listeners(self) -> list[tuple[str, Address, Server]]:
        """(name, address, server) of each transparent listener to bind."""
        found: list[tuple[str, Address, Server]] = []
        if self.config.outbound is not None:
            server = TransparentOutbound(self.runtime, self.directory, self.config)
            found.append(("transparent_outbound", self.config.outbound, server))
        if self.config.inbound is not None:
            found.append(
                (
                    "transparent_inbound",
                    self.config.inbound,
                    TransparentInbound(self.runtime, self.config),
                )
            )
        return found

    async def start(self, tg: anyio.abc.TaskGroup) -> Address | None:
        """Read the registry once (names resolve from the first call), then keep following it;
        start the DNS proxy. Returns where the DNS proxy listens, if it runs."""
        registry = self.runtime.registry
        try:
            await self.directory.refresh(registry)
        except Exception as e:  # a registry down at start: names resolve once it is back
            log.warning("intercept: cannot read the registry's services yet: %s", e)
        tg.start_soon(self.directory.follow, registry)
        if self.dns is None:
            return None
        bound: Address = await tg.start(self.dns.serve)
        return bound
