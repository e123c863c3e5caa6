"""HTTP/2 client connections, multiplexed: a pool of a few connections per endpoint.

A new stream goes to the first connection of its endpoint with room under the
peer's SETTINGS_MAX_CONCURRENT_STREAMS; when all are full, a new connection
is opened, up to `max_connections_per_endpoint`; past that, the caller waits
for a stream to finish. Connections that received a GOAWAY take no new
streams and leave the pool once their last stream ends; idle ones close
after `idle_timeout`. Bookkeeping is synchronous; only connecting awaits. The pool's
`DeadlineWatch` ends streams at their calls' deadlines for the relay (`relay.py`).

Opening a stream sends its headers at once: HTTP/2 stream ids must be used in
increasing order (RFC 9113 §5.1.1), so an id is never reserved and sent later.
"""

from __future__ import annotations

import logging
from types import TracebackType

import anyio
import anyio.abc
import attrs

from sofamesh.codecs.h2 import H2Codec, H2Limits, RawHeaders
from sofamesh.deadlines import DeadlineWatch
from sofamesh.protocols.h2.conn import H2Connection
from sofamesh.protocols.h2.stream import H2Stream
from sofamesh.transport.errors import ConnectError, PoolClosedError
from sofamesh.transport.net import Connect, connect

log = logging.getLogger("sofamesh.h2")

# What the pool lets each upstream send ahead of its reader: a streamed response to a client
# that stopped reading holds at most one stream window here, and a connection carries at
# most connection_window // stream_window (256) streams, so stalled ones never starve it.
POOL_LIMITS = H2Limits(stream_window=256 * 1024, connection_window=64 * 1024 * 1024)


@attrs.frozen(slots=True)
class H2PoolStatistics:
    endpoints: int
    connections: int
    streams: int  # open right now
    connections_opened: int
    connect_errors: int


class _Endpoint:
    __slots__ = ("connecting", "conns", "room", "waiting")

    def __init__(self) -> None:
        self.conns: list[H2Connection] = []
        self.connecting = anyio.Lock()
        self.room = anyio.Event()  # set when a stream of this endpoint ends
        self.waiting = 0  # callers waiting on `room`

    def stream_closed(self) -> None:
        if self.waiting:  # an event set per stream nobody waits for costs three calls
            self.room.set()


class H2Pool:
    """`async with H2Pool() as pool: stream = await pool.open_stream(host, port, headers)`."""

    def __init__(
        self,
        *,
        connect_timeout: float = 1.0,
        limits: H2Limits = POOL_LIMITS,
        max_connections_per_endpoint: int = 4,
        idle_timeout: float = 60.0,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.limits = limits
        self.max_connections_per_endpoint = max_connections_per_endpoint
        self.idle_timeout = idle_timeout
        self._endpoints: dict[tuple[str, int], _Endpoint] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self.connect: Connect = connect  # mutual TLS replaces it (`use_tls`)
        self._opened = 0
        self._connect_errors = 0
        # Ends streams at their calls' deadlines (`relay`), without a cancel scope per call.
        self.deadlines = DeadlineWatch()

    async def __aenter__(self) -> H2Pool:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        await self._tg.start(self.deadlines.run)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        tg, self._tg = self._tg, None
        assert tg is not None
        for ep in self._endpoints.values():
            for conn in ep.conns:
                conn.close()
        tg.cancel_scope.cancel()
        await tg.__aexit__(et, e, tb)

    def open_stream_nowait(
        self, host: str, port: int, headers: RawHeaders, end_stream: bool = False
    ) -> H2Stream | None:
        """`open_stream` on a connection already open with room, or None if there is none
        (then `open_stream` connects or waits): no coroutine for the common case."""
        ep = self._endpoints.get((host, port))
        conn = None if ep is None else _first_available(ep)
        return None if conn is None else _send_head(conn, headers, end_stream)

    async def open_stream(
        self, host: str, port: int, headers: RawHeaders, end_stream: bool = False
    ) -> H2Stream:
        """A stream to `host:port` whose headers are sent; `ConnectError` if none can open."""
        key = (host, port)
        ep = self._endpoints.get(key)
        if ep is None:
            ep = self._endpoints[key] = _Endpoint()
        while True:
            conn = _first_available(ep)
            if conn is None:
                conn = await self._grow(ep, host, port)
            if conn is not None:
                return _send_head(conn, headers, end_stream)
            if ep.room.is_set():
                ep.room = anyio.Event()
            ep.waiting += 1
            try:
                await ep.room.wait()
            finally:
                ep.waiting -= 1

    async def _grow(self, ep: _Endpoint, host: str, port: int) -> H2Connection | None:
        """A new connection if the endpoint may have one more, else None (wait for room)."""
        async with ep.connecting:
            conn = _first_available(ep)  # someone else may have connected meanwhile
            if conn is not None or len(ep.conns) >= self.max_connections_per_endpoint:
                return conn
            if self._tg is None:
                raise PoolClosedError("the HTTP/2 pool is closed")
            try:
                sock = await self.connect(host, port, self.connect_timeout)
            except ConnectError:
                self._connect_errors += 1
                raise
            conn = H2Connection(
                sock,
                H2Codec(client_side=True, limits=self.limits),
                peer=f"{host}:{port}",
                idle_timeout=self.idle_timeout,
            )
            conn.on_stream_closed = ep.stream_closed
            ep.conns.append(conn)
            self._opened += 1
            self._tg.start_soon(self._run, ep, conn)
            return conn

    async def _run(self, ep: _Endpoint, conn: H2Connection) -> None:
        try:
            await conn.run()
        finally:
            if conn in ep.conns:
                ep.conns.remove(conn)
            ep.room.set()

    def connections_by_endpoint(self) -> dict[tuple[str, int], int]:
        """Open connections per (host, port): the admin's `upstream_cx_active`."""
        return {key: len(e.conns) for key, e in self._endpoints.items() if len(e.conns)}

    def statistics(self) -> H2PoolStatistics:
        conns = [c for ep in self._endpoints.values() for c in ep.conns]
        return H2PoolStatistics(
            endpoints=len(self._endpoints),
            connections=len(conns),
            streams=sum(len(c.streams) for c in conns),
            connections_opened=self._opened,
            connect_errors=self._connect_errors,
        )


def _send_head(conn: H2Connection, headers: RawHeaders, end_stream: bool) -> H2Stream:
    stream = conn.open_stream()
    conn.codec.send_headers(stream.id, headers, end_stream)
    stream.local_closed = end_stream
    conn.flush_soon()
    return stream


def _first_available(ep: _Endpoint) -> H2Connection | None:
    for conn in ep.conns:
        if conn.available:
            return conn
    return None
