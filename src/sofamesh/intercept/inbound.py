"""The transparent inbound listener: redirected connections to the app's ports, by mTLS mode.

    tls off (or `disable`)   -> relayed as TCP to the app port the caller dialled
    `permissive`:
      a TLS handshake        -> terminated (a mesh certificate required), then served as below
      anything else, silence -> relayed as TCP (callers from outside the mesh keep working)
    `strict`:
      a TLS handshake        -> terminated (a mesh certificate required), then served as below
      anything else          -> closed, with a warning naming the peer

A terminated connection is sniffed again inside TLS: HTTP/1.1, HTTP/2 + gRPC, Bolt and
Dubbo go to that protocol's inbound server, whose chain (tracing, stats, auth by the
verified identity, limits) ends in the app port the caller dialled; anything else is
closed, since no inbound rule could apply to it. Each app address dialled gets its own
inbound servers (at most `intercept.max_app_ports` of them), created on first use.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.abc

from sofamesh.chain import Handler
from sofamesh.config.model import Address, InterceptConfig
from sofamesh.intercept.original import original_destination, was_redirected
from sofamesh.intercept.relay import Handoff, Sniffed, relay
from sofamesh.intercept.sniff import Kind
from sofamesh.intercept.transparent import sniff
from sofamesh.model import Invocation, Result
from sofamesh.observability.istio import inbound_passthrough
from sofamesh.protocols.base import Server
from sofamesh.runtime import Runtime
from sofamesh.transport.errors import TransportError
from sofamesh.transport.net import connect, format_address
from sofamesh.transport.serving import ServerLifecycle
from sofamesh.transport.tls import ALPN_H2, PERMISSIVE, SecureStream
from sofamesh.transport.tls_listener import TlsListener

log = logging.getLogger("sofamesh.intercept")

# The protocol support whose inbound server takes each kind sniffed inside TLS.
_SERVED_BY = {Kind.HTTP1: "http", Kind.H2: "grpc", Kind.BOLT: "bolt", Kind.DUBBO: "dubbo"}


class _Target:
    """One app address's inbound servers, fed by hand-offs, all ending in that address."""

    def __init__(self, runtime: Runtime, config: InterceptConfig, at: tuple[str, int]) -> None:
        chain = runtime.inbound_chain(_forward(runtime, Address(*at)))
        self.servers: dict[Kind, Server] = {}
        for kind, name in _SERVED_BY.items():
            proto = runtime.protocols.get(name)
            if proto is not None:  # every service name this address is called by: the app
                self.servers[kind] = proto.inbound_server(lambda _service: chain, config.limits)
        self.handoffs = {kind: Handoff() for kind in self.servers}

    def start(self, tg: anyio.abc.TaskGroup) -> None:
        for kind, server in self.servers.items():
            tg.start_soon(server.serve, self.handoffs[kind])

    async def close_handoffs(self) -> None:
        for handoff in self.handoffs.values():
            await handoff.aclose()


def _forward(runtime: Runtime, upstream: Address) -> Handler:
    async def forward(inv: Invocation) -> Result:
        return await runtime.send(upstream.host, upstream.port, inv)

    return forward


class TransparentInbound:
    """The transparent inbound listener (a `Server`)."""

    def __init__(self, runtime: Runtime, config: InterceptConfig) -> None:
        self._runtime, self._config, self._stats = runtime, config, runtime.stats
        self._own_port = config.inbound.port if config.inbound else 0
        self._life: ServerLifecycle[Any] = ServerLifecycle(
            "transparent-inbound", config.limits.max_connections, on_accept_end=self._close
        )
        self._secure: TlsListener | None = None
        self._targets: dict[tuple[str, int], _Target] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    async def serve(
        self,
        listener: Any,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        tls = self._runtime.tls
        if tls is not None and tls.mode != "disable":
            # The same handshake, peer check and counters as the explicit inbound listeners;
            # ALPN offers h2 for gRPC callers and HTTP/1.1 for the rest.
            self._secure = tls.listener(listener, ALPN_H2, "transparent-inbound")
        await self._life.serve(listener, self._admit, task_status, also=self._keep)

    def _keep(self, tg: anyio.abc.TaskGroup) -> None:
        self._tg = tg

    async def _close(self) -> None:
        if not self._life.accepting:
            for target in self._targets.values():
                await target.close_handoffs()

    async def drain(self) -> None:
        self._life.begin_drain()
        await self._close()
        async with anyio.create_task_group() as tg:
            for target in self._targets.values():
                for server in target.servers.values():
                    tg.start_soon(server.drain)
        await self._life.wait_stopped()

    async def _admit(self, sock: anyio.abc.ByteStream) -> None:
        if not await self._life.admit(sock):
            return
        original = original_destination(sock)
        if not was_redirected(sock, original) or original is None or original[1] == self._own_port:
            self._stats.incr("intercept.inbound.refused")  # relaying it would loop back here
            await anyio.aclose_forcefully(sock)
            return
        if self._secure is None:
            await self._relay(sock, b"", original)
        elif self._secure.mode == PERMISSIVE:
            await self._permissive(sock, self._secure, original)
        else:
            await self._mesh(await self._secure.secure(sock), original)

    async def _permissive(
        self, sock: anyio.abc.ByteStream, secure: TlsListener, original: tuple[str, int]
    ) -> None:
        """TLS is terminated; plaintext, or a client that sends nothing first, is relayed."""
        first, kind = await sniff(sock, self._config)
        if kind is not Kind.TLS:
            await self._relay(sock, first, original)
            return
        sniffed = Sniffed(sock, first, None)
        secured = await secure.secure(sniffed)
        if isinstance(secured, SecureStream) and secured.transport_stream is sniffed:
            # The handshake read every sniffed byte: the records come from the socket itself.
            secured.transport_stream = sock
        await self._mesh(secured, original)

    async def _mesh(self, tls: anyio.abc.ByteStream | None, original: tuple[str, int]) -> None:
        """A connection the mesh handshake accepted (None: refused, already closed)."""
        if tls is None:
            self._stats.incr("intercept.inbound.refused")
            return
        first, kind = await sniff(tls, self._config)
        target = self._target(original)
        if target is None or kind not in target.handoffs:
            self._refuse(tls, original, kind, target is None)
            await anyio.aclose_forcefully(tls)
            return
        self._stats.incr("intercept.inbound.mesh")
        await target.handoffs[kind].hand_over(Sniffed(tls, first, original))

    def _target(self, original: tuple[str, int]) -> _Target | None:
        target = self._targets.get(original)
        if target is None and self._life.draining:
            return None  # the hand-offs are closing: a server started now would never stop
        if target is None and len(self._targets) < self._config.max_app_ports:
            assert self._tg is not None, "connections are admitted only while serving"
            target = self._targets[original] = _Target(self._runtime, self._config, original)
            target.start(self._tg)
        return target

    def _refuse(self, sock: Any, original: tuple[str, int], kind: Kind, full: bool) -> None:
        self._stats.incr("intercept.inbound.refused")
        peer = format_address(sock.extra(anyio.abc.SocketAttribute.remote_address, None))
        if not full:
            why = f"{kind.value} inside mTLS, which no inbound server takes"
        elif self._life.draining:
            why = "the sidecar is draining"
        else:
            why = f"more than intercept.max_app_ports ({self._config.max_app_ports}) app addresses"
        where = format_address(original)
        log.warning("intercept: closed %s's mTLS connection to %s: %s", peer, where, why)

    async def _relay(self, sock: anyio.abc.ByteStream, first: bytes, to: tuple[str, int]) -> None:
        self._stats.incr("intercept.inbound.relayed")
        istio, where, name = self._runtime.istio, format_address(to), inbound_passthrough(to[0])
        try:
            app = await connect(to[0], to[1], self._config.connect_timeout)
        except TransportError as e:
            log.info("intercept: inbound to %s: %s", where, e)
            if istio is not None:  # Envoy's UF: the upstream connection failed
                istio.tcp_series("destination", where, name, "UF").failed()
            await anyio.aclose_forcefully(sock)
            return
        tally = None if istio is None else istio.tcp_series("destination", where, name)
        async with app, sock:
            await relay(sock, app, first, tally)
