"""A Bolt server on any anyio listener: multiplexed connections, a task per request.

Each connection reads frames and hands each request to a task of its own (reused from
earlier requests: `transport.workers`), so a slow call never holds up the ones behind it;
responses leave in completion order through the connection's `FrameWriter`, addressed
by request id. Heartbeats are answered on the spot, by the
server itself (a proxy never forwards them). Oneway requests run without a response.

A misbehaving peer costs only its own connection. A frame that cannot be delimited
(unknown protocol byte, impossible or over-limit lengths, bad CRC) is fatal: the
connection is closed after a CODEC_EXCEPTION reply when the frame's fixed header was
readable, so the peer learns why; a frame that was delimited but is invalid (unknown
command code, malformed header map) gets the reply and the connection carries on. Every
such problem is logged once with the peer's address.

A connection with nothing in flight that receives nothing for `idle_timeout` is closed
(clients send heartbeats while idle: sofa-bolt every 15 s, servers close after 90 s).
`drain()` stops accepting, answers new requests with SERVER_THREADPOOL_BUSY (SOFARPC
clients retry that elsewhere; sofamesh's client also moves to a new connection and closes
this one), lets the calls in flight finish, then closes each connection once it has had
nothing in flight and received nothing for `DRAIN_QUIET`: a request already on its way
is answered (busy), not cut off by the close.
`ServerConnection` (server_connection.py) is a connection's side of all this.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.abc
import attrs

from sofamesh.codecs.bolt import DEFAULT_LIMITS, BoltLimits, RequestFrame, ResponseFrame
from sofamesh.codecs.bolt.headers import DEFAULT_MAX_HEADER_ENTRIES
from sofamesh.model import Result
from sofamesh.protocols.bolt.server_connection import DRAIN_QUIET as DRAIN_QUIET
from sofamesh.protocols.bolt.server_connection import LINGER as LINGER
from sofamesh.protocols.bolt.server_connection import ServerConnection
from sofamesh.transport.budget import OVERLOAD, Holding
from sofamesh.transport.net import format_address
from sofamesh.transport.reserve import WorkerReserve
from sofamesh.transport.serving import ServerLifecycle, leaves
from sofamesh.transport.tls import peer_identity
from sofamesh.transport.tls_listener import TlsListener


@attrs.frozen(slots=True)
class BoltConnInfo:
    """Who is on the other end of a server connection."""

    id: int
    peer: str
    local: str
    identity: str = ""  # the client's SPIFFE ID, verified by mutual TLS; "" on plaintext


# A handler answers with a frame, with its bytes when it encoded the frame itself, or
# with the chain's `Result`, which the server renders (`mapping.reply_of`).
BoltAnswer = ResponseFrame | bytes | Result | None
BoltHandler = Callable[[RequestFrame, BoltConnInfo], Awaitable[BoltAnswer]]


@attrs.frozen(slots=True)
class BoltServerStatistics:
    active_connections: int
    accepted_connections: int
    rejected_connections: int
    evicted_connections: int  # idle ones closed to make room (transport/admission.py)
    requests: int
    heartbeats: int
    protocol_errors: int
    handler_errors: int
    draining: bool


class BoltServer:
    """Serves `handler` over Bolt v1/v2 on the listeners passed to `serve`."""

    def __init__(
        self,
        handler: BoltHandler,
        limits: BoltLimits = DEFAULT_LIMITS,
        *,
        max_connections: int = 10_000,
        idle_timeout: float = 90.0,
        max_connections_per_source: int = 0,
        frame_timeout: float = 30.0,
        max_write_buffer: int = 32 << 20,
        frame_progress_timeout: float = 5.0,
    ) -> None:
        self.handler = handler
        self.limits = limits
        # A handler that says it reads every request's header map first, refusing a
        # malformed one with `HeaderMapError` (the mesh's, through `mapping.invocation_of`),
        # spares the decoder its own walk of the map, when it checks the same entry limit.
        self._handler_checks = (
            getattr(handler, "checks_header_maps", False)
            and limits.max_header_entries == DEFAULT_MAX_HEADER_ENTRIES
        )
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.frame_timeout = frame_timeout  # a frame begun must arrive whole within this
        self.frame_progress_timeout = frame_progress_timeout  # ... and keep growing
        self.max_write_buffer = max_write_buffer  # replies queued for a peer that does not read
        self._life: ServerLifecycle[ServerConnection] = ServerLifecycle(
            "bolt", max_connections, max_per_source=max_connections_per_source
        )
        self.requests = self.heartbeats = self.protocol_errors = self.handler_errors = 0
        OVERLOAD.watch(self)  # half-received frames and unread replies, for the overload action

    async def serve(
        self,
        listener: anyio.abc.Listener[Any],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept and serve connections until `drain` finishes them; closes `listener`.

        The connections' workers come from a reserve of this serve's own, in a task group
        around the accept loops: they outlive a connection, not the serve."""
        for each in leaves(listener):
            if not isinstance(each, (anyio.abc.SocketListener, TlsListener)):
                await anyio.aclose_forcefully(listener)
                raise TypeError(f"bolt serves socket listeners, not {each!r}")
        async with anyio.create_task_group() as tg:
            reserve = WorkerReserve(tg, "bolt worker", idle_timeout=self.idle_timeout)
            tg.start_soon(reserve.sweep_every_idle_timeout)

            def admit(stream: anyio.abc.ByteStream) -> Awaitable[None]:
                return self._admit(stream, reserve)

            try:
                await self._life.serve(listener, admit, task_status)
            finally:  # every connection has ended: its workers are back, idle
                reserve.close()
                tg.cancel_scope.cancel()  # the sweeps

    async def _admit(self, stream: anyio.abc.ByteStream, reserve: WorkerReserve) -> None:
        if not await self._life.admit(stream):
            return
        peer = format_address(stream.extra(anyio.abc.SocketAttribute.remote_address, None))
        local = format_address(stream.extra(anyio.abc.SocketAttribute.local_address, None))
        info = BoltConnInfo(self._life.accepted, peer, local, peer_identity(stream))
        conn = ServerConnection(self, stream, info, reserve)
        self._life.conns.add(conn)
        try:
            await conn.run()
        finally:
            self._life.conns.discard(conn)

    async def drain(self) -> None:
        """Stop accepting; busy-answer new requests; return once the calls in flight are
        answered and every connection closed."""
        self._life.begin_drain()
        for conn in self._life.conns:
            conn.begin_drain()
        await self._life.wait_stopped()

    @property
    def draining(self) -> bool:
        return self._life.draining

    def holders(self) -> Iterator[Holding]:
        for conn in list(self._life.conns):
            yield conn.partial.held + conn.writer.buffered, f"bolt {conn.info.peer}", conn.evict

    def statistics(self) -> BoltServerStatistics:
        return BoltServerStatistics(
            **self._life.connection_counts(),
            requests=self.requests,
            heartbeats=self.heartbeats,
            protocol_errors=self.protocol_errors,
            handler_errors=self.handler_errors,
        )
