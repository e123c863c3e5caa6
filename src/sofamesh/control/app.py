"""The control-plane process composed: store, registry, records, sessions, catalog, API server.

`ControlPlane.run` opens the store and the registry, makes sure the `admin` user
exists (first start: the password from `SOFAMESH_ADMIN_PASSWORD`, or a generated
one reported once through `on_password`), then serves the API until `stop()`.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread

from sofamesh.codecs.http1 import Http1Limits
from sofamesh.config import Address
from sofamesh.control.api import Dispatcher, Reply, Route, token_everywhere
from sofamesh.control.api_access import AccessApi
from sofamesh.control.api_console import ConsoleApi
from sofamesh.control.api_dataplanes import DataPlaneApi
from sofamesh.control.api_rules import RulesApi
from sofamesh.control.catalog import Catalog
from sofamesh.control.config import ControlConfig
from sofamesh.control.console import ConsoleSite
from sofamesh.control.mesh_ca import CaApi, open_ca
from sofamesh.control.records import Conflict, Records
from sofamesh.control.rules import RulesBook
from sofamesh.control.sample_store import samples_for
from sofamesh.control.sessions import Sessions
from sofamesh.control.store import LastKnownStore, Store, open_store
from sofamesh.protocols.http.server import Http1Server
from sofamesh.registry import open_registry
from sofamesh.security.ca import CertificateAuthority
from sofamesh.transport.tls_https import HttpsListener, ServerCertificate

log = logging.getLogger("sofamesh.control")
HEALTH = "/ready"


class ControlPlane:
    def __init__(
        self,
        config: ControlConfig,
        *,
        on_password: Callable[[str], None] | None = None,
        store: Store | None = None,
    ) -> None:
        self.config = config
        self.on_password = on_password or (lambda p: log.warning("admin password: %s", p))
        self._store_override = store
        self.bound: Address | None = None
        self._stop = anyio.Event()
        # Set in `run` once the store is open.
        self.records: Records
        self.rules: RulesBook
        self.sessions: Sessions
        self.catalog: Catalog
        self.ca: CertificateAuthority | None
        self.routes: list[Route] = []
        self.dispatcher: Dispatcher

    def stop(self) -> None:
        self._stop.set()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[ControlPlane] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        async with AsyncExitStack() as stack:
            await self._open(stack)
            server = Http1Server(
                ConsoleSite(self.dispatcher),  # the web console at /, the API under /api
                Http1Limits(max_body_size=self.config.max_body_bytes),
                keepalive_timeout=max(60.0, self.config.watch_timeout * 2),
            )
            listen = self.config.listen
            tcp = await anyio.create_tcp_listener(local_host=listen.host, local_port=listen.port)
            self.bound = Address(listen.host, tcp.extra(anyio.abc.SocketAttribute.local_port))
            listener: anyio.abc.Listener[Any] = tcp
            if (tls := self.config.tls) is not None:  # the API over HTTPS
                listener = HttpsListener(tcp, ServerCertificate(tls.cert, tls.key), "control")
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.sessions.run)
                await tg.start(server.serve, listener)
                log.info("control plane serving on %s", self.bound)
                task_status.started(self)
                await self._stop.wait()
                self.sessions.heads.close()  # parked long-polls are answered, not waited for
                with anyio.move_on_after(5):
                    await server.drain()
                tg.cancel_scope.cancel()

    async def _open(self, stack: AsyncExitStack) -> None:
        """The store, the registry and everything built on them; the admin user exists after."""
        backend = self._store_override
        if backend is None:
            backend = await stack.enter_async_context(open_store(self.config.store))
        self.records = Records(LastKnownStore(backend))
        self.rules = RulesBook(self.records)
        self.sessions = Sessions(self.config, self.records, self.rules, samples_for(backend))
        registry = await stack.enter_async_context(open_registry(self.config.registry))
        self.catalog = Catalog(self.sessions.planes, registry)
        await self._bootstrap_admin()
        self.ca = await anyio.to_thread.run_sync(open_ca, self.config)
        self.routes = token_everywhere(self._routes(), self.config.tokens_required)
        self.dispatcher = Dispatcher(self.routes, self.records)

    async def _bootstrap_admin(self) -> None:
        if await self.records.user("admin") is not None:
            return
        password = os.environ.get("SOFAMESH_ADMIN_PASSWORD") or ""
        generated = not password
        password = password or secrets.token_urlsafe(16)
        try:
            await self.records.create_user("admin", password, admin=True)
        except Conflict:  # another replica sharing the store created it first
            return
        await self.records.audit("-", None, "user.create", "admin", bootstrap=True)
        if generated:
            self.on_password(password)

    def _routes(self) -> list[Route]:
        from sofamesh.control.openapi import openapi

        async def ready(_call: object) -> Reply:
            return Reply(200, {"ready": True})

        async def spec(_call: object) -> Reply:
            return Reply(200, openapi(self.routes))

        return [
            Route("GET", HEALTH, "public", ready, "200 once serving"),
            Route("GET", "/api/openapi.json", "public", spec, "This API as OpenAPI 3.1"),
            *AccessApi(self).routes(),
            *RulesApi(self).routes(),
            *DataPlaneApi(self).routes(),
            *CaApi(self, self.ca).routes(),
            *ConsoleApi(self).routes(),
        ]
