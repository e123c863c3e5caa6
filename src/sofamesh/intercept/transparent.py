"""The sidecar's transparent listeners: where `sofamesh-init`'s rules send redirected TCP.

Outbound, each connection is read for its original destination and sniffed:

    original destination a mesh service (virtual IP, known endpoint) -> protocol?
      HTTP/1.1, HTTP/2 + gRPC, Bolt, Dubbo -> that protocol's outbound server, the same
                                              chain as the explicit outbound listener
      anything else                         -> closed (a virtual IP leads nowhere real)
    otherwise (unknown destination):
      HTTP/1.1 whose Host names a service   -> the HTTP outbound server, as above
      anything else                         -> `unknown: pass` relays the bytes to the
                                              original destination; `block` closes

Inbound (`inbound.py`), each connection goes to the app port the caller dialled (the
original destination), by the data plane's mTLS mode.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.abc

from sofamesh.chain import Handler
from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.config.model import InterceptConfig
from sofamesh.intercept.names import ServiceDirectory
from sofamesh.intercept.original import original_destination, was_redirected
from sofamesh.intercept.relay import Handoff, Sniffed, relay
from sofamesh.intercept.sniff import Kind, classify, http1_host
from sofamesh.model import Invocation, Result, Status
from sofamesh.observability.istio import PASSTHROUGH
from sofamesh.protocols.base import Server
from sofamesh.protocols.http.mapping import (
    error_response,
    request_to_invocation,
    result_to_response,
)
from sofamesh.protocols.http.server import ConnInfo
from sofamesh.protocols.http.support import http1_server
from sofamesh.runtime import Runtime
from sofamesh.transport.errors import TransportError
from sofamesh.transport.net import connect, format_address
from sofamesh.transport.serving import ServerLifecycle
from sofamesh.transport.streams import time_limit
from sofamesh.transport.tls import LOST

log = logging.getLogger("sofamesh.intercept")

# The protocol support whose outbound server takes each sniffed kind (HTTP/1.1 has its own).
_SNIFF_ENDS: tuple[type[Exception], ...] = (TimeoutError, *LOST)
_SERVED_BY = {Kind.H2: "grpc", Kind.BOLT: "bolt", Kind.DUBBO: "dubbo"}


def named(chain: Handler, directory: ServiceDirectory) -> Handler:
    """`chain` for calls whose service may be a mesh name (`orders.mesh.local`) or address."""

    def call(inv: Invocation) -> Any:
        inv.service = directory.service_named(inv.service) or inv.service
        return chain(inv)

    return call


class TransparentHttpHandler:
    """HTTP/1.1 on a redirected connection: the service is the original destination's, else
    the one the `Host` names; then exactly the explicit outbound listener's handling."""

    def __init__(self, chain: Handler, app: str, directory: ServiceDirectory) -> None:
        self._chain, self._app, self._directory = chain, app, directory
        self._last: tuple[ConnInfo | None, str | None] = (None, None)

    async def __call__(self, req: HttpRequest, conn: ConnInfo | None = None) -> HttpResponse:
        inv = request_to_invocation(req)
        at = self._at(conn)
        inv.service = at or self._directory.service_named(inv.service) or inv.service
        if not inv.service:
            return error_response(Status.BAD_REQUEST, "request names no service: set Host")
        inv.caller = self._app
        result: Result = await self._chain(inv)
        return result_to_response(result, inv.service)

    def _at(self, conn: ConnInfo | None) -> str | None:
        """The service of the connection's original destination (kept for its next request)."""
        last, service = self._last
        if conn is last:
            return service
        host, _, port = (conn.local if conn else "").rpartition(":")
        service = self._directory.service_at(host, int(port)) if port.isdigit() else None
        self._last = (conn, service)
        return service


class TransparentOutbound:
    """The transparent outbound listener (a `Server`)."""

    def __init__(
        self, runtime: Runtime, directory: ServiceDirectory, config: InterceptConfig
    ) -> None:
        self._directory, self._config, self._stats = directory, config, runtime.stats
        self._istio = runtime.istio
        app = runtime.config.app
        chain = named(runtime.outbound_chain(), directory)
        http = TransparentHttpHandler(runtime.outbound_chain(), app, directory)
        self._servers: dict[Kind, Server] = {Kind.HTTP1: http1_server(http, config.limits)}
        for kind, name in _SERVED_BY.items():
            proto = runtime.protocols.get(name)
            if proto is not None:
                self._servers[kind] = proto.outbound_server(chain, app, config.limits)
        self._handoffs = {kind: Handoff() for kind in self._servers}
        self._life: ServerLifecycle[Any] = ServerLifecycle(
            "transparent", config.limits.max_connections, on_accept_end=self._close_handoffs
        )

    async def serve(
        self,
        listener: Any,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        await self._life.serve(listener, self._admit, task_status, also=self._start)

    def _start(self, tg: anyio.abc.TaskGroup) -> None:
        for kind, server in self._servers.items():
            tg.start_soon(server.serve, self._handoffs[kind])

    async def _close_handoffs(self) -> None:
        if not self._life.accepting:
            for handoff in self._handoffs.values():
                await handoff.aclose()

    async def drain(self) -> None:
        self._life.begin_drain()
        await self._close_handoffs()
        async with anyio.create_task_group() as tg:
            for server in self._servers.values():
                tg.start_soon(server.drain)
        await self._life.wait_stopped()

    async def _admit(self, sock: anyio.abc.ByteStream) -> None:
        if not await self._life.admit(sock):
            return
        original = original_destination(sock)
        if not was_redirected(sock, original):
            original = None  # dialled directly: only a Host can say where to
        service = self._directory.service_at(*original) if original else None
        first, kind = await sniff(sock, self._config)
        if kind is Kind.HTTP1 and service is None:
            first = await _read_head(sock, first, self._config)
            host = http1_host(first)
            service = self._directory.service_named(host) if host else None
        if service is not None and kind in self._handoffs:
            self._stats.incr("intercept.outbound.mesh")
            await self._handoffs[kind].hand_over(Sniffed(sock, first, original))
        elif service is None and original is not None and self._config.unknown == "pass":
            self._stats.incr("intercept.outbound.passthrough")
            await self._pass(sock, first, original)
        else:
            self._refuse(sock, original, service, kind)
            await anyio.aclose_forcefully(sock)

    def _refuse(
        self, sock: Any, original: tuple[str, int] | None, service: str | None, kind: Kind
    ) -> None:
        self._stats.incr("intercept.outbound.refused")
        peer = format_address(sock.extra(anyio.abc.SocketAttribute.remote_address, None))
        where = format_address(original) if original else "this port, dialled directly"
        why = f"{kind.value} to service {service}" if service else "an unknown destination"
        log.info("intercept: closed %s's connection to %s: %s", peer, where, why)

    async def _pass(self, sock: anyio.abc.ByteStream, first: bytes, to: tuple[str, int]) -> None:
        where = format_address(to)
        try:
            upstream = await connect(to[0], to[1], self._config.connect_timeout)
        except TransportError as e:
            log.info("intercept: passing through to %s: %s", where, e)
            if self._istio is not None:  # Envoy's UF: the upstream connection failed
                self._istio.tcp_series("source", where, PASSTHROUGH, "UF").failed()
            await anyio.aclose_forcefully(sock)
            return
        istio = self._istio
        tally = None if istio is None else istio.tcp_series("source", where, PASSTHROUGH)
        async with upstream, sock:
            await relay(sock, upstream, first, tally)


async def sniff(sock: anyio.abc.ByteStream, config: InterceptConfig) -> tuple[bytes, Kind]:
    """The first bytes and the protocol they open (TCP if nothing comes in time)."""
    buf = b""
    try:  # `time_limit`: the stream's own lazy timer on asyncio, not a cancel scope
        with time_limit(sock, config.sniff_timeout):
            while (kind := classify(buf)) is None:
                buf += await sock.receive(65536)
            return buf, kind
    except _SNIFF_ENDS:
        return buf, Kind.TCP


async def _read_head(sock: anyio.abc.ByteStream, buf: bytes, config: InterceptConfig) -> bytes:
    """`buf` and more, up to the end of the request head (bounded by `max_header_bytes`)."""
    try:
        with time_limit(sock, config.sniff_timeout):
            while b"\r\n\r\n" not in buf and len(buf) < config.limits.max_header_bytes:
                buf += await sock.receive(65536)
    except _SNIFF_ENDS:
        pass
    return buf
