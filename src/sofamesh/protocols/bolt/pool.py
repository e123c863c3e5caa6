"""Bolt client connections per endpoint: few, long-lived, multiplexed.

Bolt needs no pool of idle connections as HTTP/1.1 does: one connection carries any
number of calls at once (sofa-bolt opens one per address by default). Per endpoint the
pool keeps up to `connections_per_endpoint` and spreads calls over them by fewest in
flight. Picking a live connection is synchronous; connecting is serialised per endpoint,
so a burst of first calls opens one connection, not hundreds.

A connection found closed before the frame left (`ConnectError` from the connection) is
replaced once; every other failure surfaces to the caller, whose governance decides.
Connections that carried no call for `idle_timeout` and have nothing in flight are closed
by a reaper. A call gives up at its deadline: the pool's `DeadlineWatch` wakes the calls
whose deadline passed, and only the rare waits (connecting, a socket far behind) take a
cancel scope (a scope per call cost about a tenth of the sidecar's CPU per request).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from types import TracebackType

import anyio
import anyio.abc
import attrs

from sofamesh.codecs.bolt import DEFAULT_LIMITS, BoltLimits, RequestFrame, ResponseFrame
from sofamesh.deadlines import DeadlineWatch
from sofamesh.protocols.bolt.client import (
    BoltClientConnection,
    CallTimeoutError,
    HeartbeatConfig,
)
from sofamesh.transport.errors import ConnectError, PoolClosedError
from sofamesh.transport.net import Connect, connect

log = logging.getLogger("sofamesh.bolt")


@attrs.frozen(kw_only=True)
class BoltPoolConfig:
    limits: BoltLimits = DEFAULT_LIMITS
    connect_timeout: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    connections_per_endpoint: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    idle_timeout: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))
    heartbeats: HeartbeatConfig = attrs.field(factory=HeartbeatConfig)


@attrs.frozen
class BoltPoolStatistics:
    endpoints: int
    open_connections: int
    in_flight: int
    connections_opened: int
    connect_errors: int


class _Endpoint:
    __slots__ = ("connecting", "conns")

    def __init__(self) -> None:
        self.conns: list[BoltClientConnection] = []
        self.connecting = anyio.Lock()


class BoltPool:
    """`async with BoltPool(config) as pool: resp = await pool.call(host, port, frame)`."""

    def __init__(self, config: BoltPoolConfig | None = None) -> None:
        self.config = config or BoltPoolConfig()
        self._endpoints: dict[tuple[str, int], _Endpoint] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self.connect: Connect = connect  # mutual TLS replaces it (`use_tls`)
        self._stack = contextlib.AsyncExitStack()
        self._deadlines = DeadlineWatch()
        # anyio's clock `seconds` from now, as `call` takes its deadline (cheaply): the
        # watch's own method, bound once (a call per proxied call fewer than a wrapper).
        self.time_in: Callable[[float], float] = self._deadlines.time_in
        self._per_endpoint = self.config.connections_per_endpoint  # read per call
        self._opened = self._connect_errors = 0

    async def __aenter__(self) -> BoltPool:
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        self._tg.start_soon(self._reap_forever)
        await self._tg.start(self._deadlines.run)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        tg, self._tg = self._tg, None
        if tg is not None:
            tg.cancel_scope.cancel()
        await self._stack.__aexit__(et, e, tb)

    async def call(
        self, host: str, port: int, frame: RequestFrame, at: float = math.inf
    ) -> ResponseFrame:
        """One call to `host:port` by `at` (anyio's clock); `ConnectError` means the frame
        never left, `CallTimeoutError` that `at` came first."""
        conn = self.ready(host, port) or await self._connect_by(host, port, at)
        try:
            return await conn.call(frame, at)
        except ConnectError:  # closed under us before sending: once more, on a new one
            return await self.call_again(host, port, frame, at)

    async def call_again(
        self, host: str, port: int, frame: RequestFrame, at: float = math.inf
    ) -> ResponseFrame:
        """`call` on a new connection, after the one `ready` gave closed under the call."""
        conn = await self._connect_by(host, port, at)
        return await conn.call(frame, at)

    @property
    def deadlines(self) -> DeadlineWatch | None:
        """The watch that wakes calls at their deadlines, while the pool runs (else None)."""
        return self._deadlines if self._tg is not None else None

    def ready(self, host: str, port: int) -> BoltClientConnection | None:
        """A connection to use now, if the endpoint has enough (no await: the hot path;
        `call` does the rest, or `call_again` when this one closed before sending)."""
        ep = self._endpoints.get((host, port))
        if ep is None:
            return None
        conns = ep.conns  # `_pick(ep)`, inline: a Python call per proxied call
        if len(conns) < self._per_endpoint:
            return None
        return min(conns, key=_load) if len(conns) > 1 else conns[0]

    async def _connect_by(self, host: str, port: int, at: float) -> BoltClientConnection:
        with anyio.CancelScope(deadline=at):
            return await self.connection(host, port)
        raise CallTimeoutError(f"no connection to {host}:{port} before the deadline")

    async def send_oneway(self, host: str, port: int, frame: RequestFrame) -> None:
        conn = await self.connection(host, port)
        await conn.send_oneway(frame)

    async def connection(self, host: str, port: int) -> BoltClientConnection:
        """A live connection to `host:port`, opening one if there are too few."""
        ep = self._endpoints.get((host, port))
        if ep is not None:
            conn = self._pick(ep)
            if conn is not None:
                return conn
        else:
            ep = self._endpoints[(host, port)] = _Endpoint()
        async with ep.connecting:
            return self._pick(ep) or await self._open(ep, host, port)

    def _pick(self, ep: _Endpoint) -> BoltClientConnection | None:
        conns = ep.conns
        if len(conns) < self._per_endpoint:
            return None
        return min(conns, key=_load) if len(conns) > 1 else conns[0]

    async def _open(self, ep: _Endpoint, host: str, port: int) -> BoltClientConnection:
        if self._tg is None:
            raise PoolClosedError("the bolt pool is closed")
        try:
            stream = await self.connect(host, port, self.config.connect_timeout)
        except ConnectError:
            self._connect_errors += 1
            raise
        cfg = self.config
        conn = BoltClientConnection(
            stream,
            f"{host}:{port}",
            limits=cfg.limits,
            heartbeats=cfg.heartbeats,
            on_closed=lambda c: _discard(ep.conns, c),
            deadlines=self._deadlines,
        )
        await self._tg.start(conn.run)
        ep.conns.append(conn)
        self._opened += 1
        return conn

    async def _reap_forever(self) -> None:
        """Close connections that carried no call for a whole `idle_timeout` (so after
        between one and two of them) and have none in flight."""
        seen: dict[BoltClientConnection, int] = {}
        while True:
            await anyio.sleep(self.config.idle_timeout)
            for key, ep in list(self._endpoints.items()):
                for conn in list(ep.conns):
                    if conn.in_flight == 0 and seen.get(conn) == conn.calls:
                        log.debug("bolt: closing idle connection to %s", conn.name)
                        await conn.aclose()
                if not ep.conns and not ep.connecting.locked():
                    del self._endpoints[key]
            seen = {c: c.calls for ep in self._endpoints.values() for c in ep.conns}

    def connections_by_endpoint(self) -> dict[tuple[str, int], int]:
        """Open connections per (host, port): the admin's `upstream_cx_active`."""
        return {key: len(e.conns) for key, e in self._endpoints.items() if len(e.conns)}

    def statistics(self) -> BoltPoolStatistics:
        conns = [c for ep in self._endpoints.values() for c in ep.conns]
        return BoltPoolStatistics(
            endpoints=len(self._endpoints),
            open_connections=len(conns),
            in_flight=sum(c.in_flight for c in conns),
            connections_opened=self._opened,
            connect_errors=self._connect_errors,
        )


def _load(conn: BoltClientConnection) -> int:
    return conn.in_flight


def _discard(conns: list[BoltClientConnection], conn: BoltClientConnection) -> None:
    with contextlib.suppress(ValueError):
        conns.remove(conn)
