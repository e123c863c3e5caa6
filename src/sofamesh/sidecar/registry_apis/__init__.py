"""Eureka, Consul and Nacos APIs served by the sidecar, so apps join the mesh unchanged.

An app points its framework's registry address at its own sidecar
(`registry_apis:` in the config). Its registrations become mesh publications
(`mesh.MeshBridge.publish`), its lookups answer with this sidecar's addresses
for each service, and leases lapse as the original registry's do
(`book.Book`). See docs/registries.md.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.abc

from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.config import Address, ConfigError
from sofamesh.config.local_api import is_loopback
from sofamesh.config.model import LimitsConfig
from sofamesh.protocols.http.support import http1_server
from sofamesh.sidecar.app import Sidecar
from sofamesh.sidecar.binding import bind_listener
from sofamesh.sidecar.registry_apis.book import Book
from sofamesh.sidecar.registry_apis.consul import ConsulApi
from sofamesh.sidecar.registry_apis.eureka import EurekaApi
from sofamesh.sidecar.registry_apis.mesh import MeshBridge
from sofamesh.sidecar.registry_apis.nacos import NacosApi

log = logging.getLogger("sofamesh.registry_apis")


async def serve_registry_apis(
    sidecar: Sidecar, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Serve each configured API until cancelled; ready once every one listens."""
    cfg = sidecar.config.registry_apis
    book = Book(cfg.max_instances)
    clock = sidecar.runtime.clock
    async with anyio.create_task_group() as tg:
        mesh = MeshBridge(sidecar, tg)
        apis: dict[str, Any] = {}
        if cfg.eureka is not None:
            apis["eureka"] = EurekaApi(mesh, book, sidecar.runtime.clock, cfg.eureka.lease)
            await _serve(sidecar, tg, "eureka", cfg.eureka.listen, apis["eureka"])
        if cfg.consul is not None:
            apis["consul"] = ConsulApi(mesh, book, sidecar.runtime.clock, tg)
            await _serve(sidecar, tg, "consul", cfg.consul.listen, apis["consul"])
        if cfg.nacos is not None:
            nacos = cfg.nacos
            apis["nacos"] = NacosApi(mesh, book, clock, nacos.lease, nacos.delete_after)
            await _serve(sidecar, tg, "nacos", nacos.listen, apis["nacos"])
        tg.start_soon(_sweep, book, apis, cfg.sweep_interval, sidecar)
        task_status.started()


class BrowserGuard:
    """Refuse what a web page could make a browser send, before `api` sees it.

    Registry clients send no `Origin`; a browser does on a cross-origin request, and
    Nacos's form posts need no CORS preflight. A Host that is not loopback is a page
    reaching us through DNS rebinding. Either is refused (403) with a log line.
    """

    def __init__(self, name: str, api: Any) -> None:
        self.name = name
        self.api = api

    async def __call__(self, req: HttpRequest, conn: object = None) -> HttpResponse:
        host = (req.header(b"host") or b"").decode("latin-1")
        name = host.rsplit(":", 1)[0].strip("[]") if not host.endswith("]") else host.strip("[]")
        if req.header(b"origin") is not None or not is_loopback(name or "127.0.0.1"):
            log.warning(
                "%s: refused a browser's request (Origin or Host %r)", self.name, host[:100]
            )
            return HttpResponse(status=403, body=b"requests from browsers are refused\n")
        response: HttpResponse = await self.api(req, conn)
        return response


async def _serve(
    sidecar: Sidecar, tg: anyio.abc.TaskGroup, name: str, address: Address, handler: Any
) -> None:
    if sidecar.inbound_address("http") is None:
        raise ConfigError([f"registry_apis.{name}: needs an inbound http listener to publish on"])
    listener = await bind_listener(f"registry_apis.{name}", address)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    sidecar.bound[f"registry_apis.{name}"] = Address(address.host, port)
    limits = LimitsConfig(max_body_bytes=sidecar.config.registry_apis.max_body_bytes)
    await tg.start(http1_server(BrowserGuard(name, handler), limits).serve, listener)


async def _sweep(book: Book, apis: dict[str, Any], interval: float, sidecar: Sidecar) -> None:
    """Evict the instances whose lease lapsed, as each original registry's evictor does."""
    while True:
        await anyio.sleep(interval)
        now = sidecar.runtime.clock.now()
        for api in apis.values():
            await api.tick(now)
        for inst in book.lapsed(now):
            try:
                await apis[inst.api].lapse(inst)
            except Exception:  # one failed withdrawal must not stop the evictor
                log.exception(
                    "withdrawing lapsed %s instance %s failed", inst.api, inst.instance_id
                )
