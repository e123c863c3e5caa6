"""An HTTP/1.1 server on any anyio listener: one task per connection, all owned by `serve`.

Each connection reads a request, awaits the handler, writes the response in
one `send`, and loops while the connection persists (RFC 9112 §9.3). Requests
on one connection are handled one at a time, so pipelined responses leave in
request order. A misbehaving peer costs only its own connection: malformed
input gets 400/413/431/501 and a close, a failing handler gets a 500, and
every protocol error is logged once with the peer's address.

Timeouts, by phase of the next request (see `Http1ServerConfig`): waiting
for a first byte (`header_timeout` on a new connection, `keepalive_timeout`
between requests: then the connection just closes), reading the head
(`header_timeout` from its first byte: a 408 answers a slow client), and
reading the body (`body_timeout` between reads, also 408). A response the
client does not take within `send_timeout` (it stopped reading) ends the
connection, as nginx's `send_timeout` does. Each connection's loop is a
`ServerConnection` (server_connection.py); the server admits, drains and counts them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.abc

from sofamesh.codecs.http1 import DEFAULT_LIMITS, Http1Limits
from sofamesh.protocols.http.server_config import (
    ConnInfo,
    Http1Handler,
    Http1ServerConfig,
    ServerStatistics,
    handler_for,
)
from sofamesh.protocols.http.server_connection import DRAIN_IDLE_GRACE as DRAIN_IDLE_GRACE
from sofamesh.protocols.http.server_connection import ServerConnection
from sofamesh.protocols.http.sweeper import Sweeper
from sofamesh.transport.budget import OVERLOAD, Holding, Overload
from sofamesh.transport.net import format_address
from sofamesh.transport.serving import ServerLifecycle
from sofamesh.transport.tls_names import peer_identity

__all__ = [
    "ConnInfo",
    "Http1Handler",
    "Http1Server",
    "Http1ServerConfig",
    "ServerStatistics",
    "handler_for",
]

# The clock of the connections' read deadlines (server_connection.py), which the sweeper checks.
_now = time.monotonic


class Http1Server:
    """Serves `handler` over HTTP/1.1 on the listeners passed to `serve`."""

    def __init__(
        self,
        handler: Http1Handler,
        limits: Http1Limits = DEFAULT_LIMITS,
        *,
        max_connections: int = 10_000,
        keepalive_timeout: float = 60.0,
        header_timeout: float = 10.0,
        body_timeout: float = 30.0,
        linger_timeout: float = 2.0,
        send_timeout: float = 60.0,
        max_connections_per_source: int = 0,
        overload: Overload = OVERLOAD,
    ) -> None:
        self.overload = overload  # the buffer budget its requests count in, and are shed by
        self.config = Http1ServerConfig(
            limits,
            max_connections,
            keepalive_timeout,
            header_timeout,
            body_timeout,
            linger_timeout,
            send_timeout,
            max_connections_per_source,
        )
        self.handler = handler
        self._life: ServerLifecycle[ServerConnection] = ServerLifecycle(
            "http1",
            max_connections,
            on_accept_end=self._accept_ended,
            max_per_source=max_connections_per_source,
        )
        cfg = self.config
        timeouts = (cfg.keepalive_timeout, cfg.header_timeout, cfg.body_timeout, cfg.send_timeout)
        # A timeout fires at most a quarter of its length late.
        self._sweeper = Sweeper(self._life.conns, min(min(timeouts) / 4, 1.0), _now)
        self._requests_served = 0
        self._protocol_errors = 0
        self._handler_errors = 0
        overload.watch(self)  # its exchanges' buffers, for the overload action

    async def serve(
        self,
        listener: anyio.abc.Listener[Any],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept and serve connections until `drain` finishes them; closes `listener`.

        Reports readiness through `task_status` (use `task_group.start`). May
        run once per listener, concurrently.
        """
        await self._life.serve(listener, self._admit, task_status, also=self._start_sweeper)

    def _start_sweeper(self, tg: anyio.abc.TaskGroup) -> None:
        tg.start_soon(self._sweeper.run, self._stop_sweeping_if_done)

    def _stop_sweeping_if_done(self) -> None:
        # Drained and no connection left: nothing to watch, let `serve` return now.
        life = self._life
        if life.draining and not life.conns and not life.accepting:
            self._sweeper.stop()

    async def _accept_ended(self) -> None:
        self._stop_sweeping_if_done()

    async def _admit(self, stream: anyio.abc.ByteStream) -> None:
        if not await self._life.admit(stream):
            return
        conn = ServerConnection(self, stream, self._new_info(stream))
        self._life.conns.add(conn)
        self._sweeper.wake()
        await conn.run()

    def _new_info(self, stream: Any) -> ConnInfo:
        peer = format_address(stream.extra(anyio.abc.SocketAttribute.remote_address, None))
        local = format_address(stream.extra(anyio.abc.SocketAttribute.local_address, None))
        return ConnInfo(self._life.accepted, peer, local, peer_identity(stream))

    async def drain(self) -> None:
        """Stop accepting, close idle connections, finish in-flight requests, return.

        Each in-flight request gets its response with "Connection: close".
        A connection idle when the drain begins, or between requests while it
        runs, waits `DRAIN_IDLE_GRACE` more (the sweeper closes it then) and a
        request that arrives meanwhile is answered, with the close: a keep-alive
        client may have sent one the loop has not read yet, and closing with it
        unread would lose it (RFC 9112 9.6). Bound the drain with
        `anyio.move_on_after` and then cancel `serve` to cut the stragglers off.
        """
        self._life.begin_drain()
        deadline = _now() + DRAIN_IDLE_GRACE
        for conn in self._life.conns:
            conn.close_idle_by(deadline)
        await self._life.wait_stopped()

    def holders(self) -> Iterator[Holding]:
        for conn in list(self._life.conns):
            yield conn.held + conn.reading, f"http1 {conn.info.peer}", conn.watch.cancel

    def statistics(self) -> ServerStatistics:
        return ServerStatistics(
            **self._life.connection_counts(),
            requests_served=self._requests_served,
            protocol_errors=self._protocol_errors,
            handler_errors=self._handler_errors,
        )

    @property
    def draining(self) -> bool:
        return self._life.draining

    def _forget(self, conn: ServerConnection) -> None:
        self._life.conns.discard(conn)
        self._stop_sweeping_if_done()
