"""The sidecar: listeners, publication, the local API and draining, composed in one place
(publication and registrations in `publishing.py`, the inbound routes in `routing.py`).

Inbound listeners carry remote calls to the local app (a TCP upstream);
outbound listeners carry the app's calls to other services. Both run the
same chains as the SDK (`sofamesh.runtime`). Apps using the SDK in sidecar
mode register through the local API (`sofamesh.sidecar.admin`), and the
sidecar publishes them under its own inbound address.

Lifecycle: start listeners -> publish -> ready. On SIGTERM, `/quitquitquit` or
`stop()`: not ready (503) -> unpublish -> stop accepting -> let in-flight calls
finish (up to `drain_timeout`) -> exit. Handed over to a new process (`--upgrade`,
sidecar/upgrade.py): stop accepting -> finish in-flight calls -> exit, leaving the
publications to the new process.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.to_thread

from sofamesh.chain import Handler
from sofamesh.clock import Clock
from sofamesh.config import Address, ConfigError, ListenerConfig, MeshConfig
from sofamesh.config.local_api import token_path
from sofamesh.endpoint import Endpoint
from sofamesh.governance.source import LastGoodRules
from sofamesh.protocols import ProtocolSupport, Server
from sofamesh.protocols.http.support import http1_server
from sofamesh.runtime import Composes, Runtime
from sofamesh.sidecar.binding import bind_listener
from sofamesh.sidecar.publishing import Publishing, Registration
from sofamesh.sidecar.routing import Routing
from sofamesh.sidecar.token import remove_token, write_token
from sofamesh.sidecar.upgrade import ListenerSockets, Takeover, UpgradeServer, upgrade_socket_path
from sofamesh.transport.budget import OVERLOAD, Overload
from sofamesh.transport.heap import HeapTrimmer
from sofamesh.transport.reclaim import Reclaimer

if TYPE_CHECKING:
    from sofamesh.codecs.http1 import HttpRequest, HttpResponse
    from sofamesh.protocols.http.server_config import ConnInfo
    from sofamesh.sidecar.admin import AdminApi

log = logging.getLogger("sofamesh.sidecar")


def _reclaimer(config: MeshConfig) -> Reclaimer:
    """The overload actions on memory, as `overload:` configures them (transport/reclaim.py)."""
    o = config.overload
    trimmer = HeapTrimmer(o.trim_after_bytes, o.trim_interval) if o.trim_heap else None
    return Reclaimer(OVERLOAD, reset_above=o.reset_above, reset_to=o.reset_to,
                     interval=o.check_interval, idle_interval=o.idle_check_interval,
                     trimmer=trimmer)  # fmt: skip


class Sidecar(Publishing, Routing):
    """One sidecar process's mesh: its listeners and lifecycle here; what it publishes in
    `publishing.py`, which chain serves a call in `routing.py`."""

    def __init__(
        self,
        config: MeshConfig,
        *,
        clock: Clock | None = None,
        upgrades: bool = False,
        takeover: Takeover | None = None,
        registry: Any = None,
    ) -> None:
        """`registry`: one already made (a worker's, fed by its main process)."""
        self.config = config
        self.runtime = Runtime(config, composes=Composes.DIRECT, clock=clock, registry=registry)
        OVERLOAD.report_to(self.runtime.stats.incr)  # the defences' counts, in /stats
        OVERLOAD.limit = config.buffer_budget
        if config.rules_file is not None or config.rules_key is not None:
            # Rules pushed from a source survive a restart that finds the source invalid.
            self.runtime.governance.last_good = LastGoodRules(config.last_good_rules_path)
        self.started_at = time.time()
        self.ready = False
        self.healthy = True
        self.draining = False
        self.bound: dict[str, Address] = {}  # "inbound[0]" -> actual address (port 0 resolved)
        self.registrations: dict[tuple[str, str], Registration] = {}
        self._registered: anyio.Event | None = None  # set by a registration, for the expiry
        self._published: dict[str, Endpoint] = {}
        self._servers: list[Server] = []
        self.servers: dict[str, Server] = {}  # by listener name: the admin's per-listener stats
        self._stop = anyio.Event()
        self._stopped = anyio.Event()
        # By upstream: the declared services' chains, then a catch-all's (`caught`).
        self._inbound_chains: tuple[dict[Address, Handler], dict[Address, Handler]] = ({}, {})
        self.token = ""  # the local API's, once the admin API listens
        self.token_path: Path | None = None
        self.access_logs = self._access_logs()  # by listener name
        # In-place upgrades (sidecar/upgrade.py): the listening sockets by listener name,
        # those taken over from the process this one replaces, and the control socket.
        self.takeover = takeover
        self.sockets = takeover.sockets if takeover is not None else ListenerSockets()
        self.upgrades = UpgradeServer(self, upgrade_socket_path(config)) if upgrades else None
        self.handed_over = False

    # -- lifecycle --------------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[Sidecar] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            async with self.runtime, anyio.create_task_group() as tg:
                tg.start_soon(_reclaimer(self.config).run)  # resets and heap trims on memory
                if self.config.control is not None:  # rules from the control plane, first
                    from sofamesh.control.hosts import SidecarHost, run_agent

                    await tg.start(run_agent, self.config, SidecarHost(self))
                for access_log in self.access_logs.values():  # flushed off the loop
                    await tg.start(access_log.sink.run)
                await self._start_listeners(tg)
                self.sockets.close_unclaimed()
                await self._publish_static()
                tg.start_soon(self._expire_registrations)
                if self.config.registry_apis.enabled:  # Eureka, Consul, Nacos for unchanged apps
                    from sofamesh.sidecar.registry_apis import serve_registry_apis

                    await tg.start(serve_registry_apis, self)
                self.ready = True
                await self._serve_upgrades(tg)
                log.info("sidecar for app %s ready: %s", self.config.app, self._describe_bound())
                task_status.started(self)
                await self._stop.wait()
                await self._drain()
                for access_log in self.access_logs.values():
                    await access_log.sink.aclose()
                if self.handed_over and self.upgrades is not None:
                    with anyio.move_on_after(self.config.drain_timeout):
                        await self.upgrades.finished.wait()  # the new one has published
                tg.cancel_scope.cancel()
        finally:
            # The token opens nothing once we are gone (after an upgrade, it is the new one's).
            if self.token_path is not None and not self.handed_over:
                remove_token(self.token_path, self.token)
        self._stopped.set()

    async def _start_listeners(self, tg: anyio.abc.TaskGroup) -> None:
        for i, lc in enumerate(self.config.inbound):
            proto = self._protocol(f"inbound[{i}]", lc)
            server = proto.inbound_server(self._route(lc, f"inbound[{i}]"), lc.limits)
            await self._listen(tg, f"inbound[{i}]", lc, server, proto.alpn)
        for i, lc in enumerate(self.config.outbound):
            proto = self._protocol(f"outbound[{i}]", lc)
            chain = self._logged(f"outbound[{i}]", self.runtime.outbound_chain())
            server = proto.outbound_server(chain, self.config.app, lc.limits)
            await self._listen(tg, f"outbound[{i}]", lc, server)
        if self.config.intercept is not None:  # transparent mode (docs/deployment.md)
            await self._start_transparent(tg)
        if self.config.admin is not None:
            await self._listen_admin(tg)

    async def _start_transparent(self, tg: anyio.abc.TaskGroup) -> None:
        from sofamesh.intercept.mode import TransparentMode

        assert self.config.intercept is not None
        mode = TransparentMode(self.runtime, self.config.intercept)
        dns = await mode.start(tg)  # the names first: a redirected connection needs them
        if dns is not None:
            self.bound["dns"] = dns
        for name, address, server in mode.listeners():
            listener = await bind_listener(name, address)
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            self.bound[name] = Address(address.host, port)
            self._servers.append(server)
            self.servers[name] = server
            await tg.start(server.serve, listener)

    async def wait_stopped(self) -> None:
        """Return once `run` has drained and closed everything."""
        await self._stopped.wait()

    def stop(self) -> None:
        """Begin a graceful shutdown (what SIGTERM and /quitquitquit do)."""
        self._stop.set()

    async def _serve_upgrades(self, tg: anyio.abc.TaskGroup) -> None:
        """Finish taking over from the process this one replaces, then take upgrade requests."""
        if self.takeover is not None:
            await self.takeover.complete(self)
        if self.upgrades is not None:
            await tg.start(self.upgrades.serve)

    def hand_over(self) -> None:
        """A new process serves our listeners now: drain without withdrawing what it published.

        The registry forgets our entries rather than withdrawing them: they have the same
        keys as the new process's, and a withdrawal would take its endpoints down too.
        """
        self.handed_over = True
        forget = getattr(self.runtime.registry, "forget", None)
        if forget is not None:
            for ep in self._published.values():
                forget(ep)
        self.stop()

    async def _drain(self) -> None:
        self.draining = True
        self.ready = False
        if self.handed_over:  # the publications are the new process's now
            log.info("draining: finishing in-flight requests")
        else:
            log.info("draining: unpublishing and finishing in-flight requests")
        with anyio.CancelScope(shield=True):
            if not self.handed_over:
                await self._unpublish_all()
            with anyio.move_on_after(self.config.drain_timeout):
                async with anyio.create_task_group() as tg:
                    for server in self._servers:
                        tg.start_soon(server.drain)
        log.info("drained")

    def _protocol(self, name: str, lc: ListenerConfig) -> ProtocolSupport:
        proto = self.runtime.protocols.get(lc.protocol)
        if proto is None:
            raise ConfigError([f"{name}.protocol: {lc.protocol} is not available in this build"])
        return proto

    async def _listen(
        self,
        tg: anyio.abc.TaskGroup,
        name: str,
        lc: ListenerConfig,
        server: Server,
        alpn: tuple[str, ...] | None = None,
    ) -> None:
        """Serve `server` on `lc.listen`; `alpn` given: a mesh-facing listener, under mTLS if on."""
        listener = await self.sockets.open(name, lc.listen, bind_listener)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        self.bound[name] = Address(lc.listen.host, port)
        self._servers.append(server)
        self.servers[name] = server
        tls = self.runtime.tls
        if alpn is not None and tls is not None:
            await tg.start(server.serve, tls.listener(listener, alpn, name))
        else:  # the outbound listeners and the admin API: the app's own, local hop
            await tg.start(server.serve, listener)

    async def _listen_admin(self, tg: anyio.abc.TaskGroup) -> None:
        assert self.config.admin is not None
        admin = self.config.admin
        listener = await self.sockets.open("admin", admin, bind_listener)
        self.bound["admin"] = Address(
            admin.host, listener.extra(anyio.abc.SocketAttribute.local_port)
        )
        self.token_path = token_path(self.config.local_api, self.bound["admin"].port)
        # After an upgrade, the old process's token: apps holding it keep their access.
        self.token = await anyio.to_thread.run_sync(
            write_token, self.token_path, self.sockets.token
        )
        # Its own budget, never reached: /ready and /stats answer whatever the listeners hold.
        unshed = Overload(limit=sys.maxsize)
        server = http1_server(
            AdminOnFirstRequest(self.admin_api),
            self.config.admin_limits,
            overload=unshed,
            stream_bodies=False,
        )
        await tg.start(server.serve, listener)

    def admin_api(self) -> AdminApi:
        """The admin API's handler (a main process of workers answers for them all)."""
        from sofamesh.sidecar.admin import AdminApi

        return AdminApi(self)

    def _describe_bound(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.bound.items())


class AdminOnFirstRequest:
    """The admin API's handler, made (and its modules imported) with its first request: an
    idle sidecar's admin listener holds only this."""

    def __init__(self, make: Callable[[], AdminApi]) -> None:
        self._make = make
        self._api: AdminApi | None = None

    async def __call__(self, req: HttpRequest, conn: ConnInfo) -> HttpResponse:
        if self._api is None:
            self._api = self._make()
        return await self._api(req, conn)
