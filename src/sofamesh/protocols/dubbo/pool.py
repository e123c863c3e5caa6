"""Dubbo client connections per endpoint: few, long-lived, multiplexed.

As Dubbo's own client (one shared connection per provider address by default): per
endpoint up to `connections_per_endpoint` connections, calls spread by fewest in
flight. Connecting is serialised per endpoint, so a burst of first calls opens one
connection. A connection found closed before the frame left is replaced once; other
failures reach the caller, whose governance decides. Connections idle for
`idle_timeout` with nothing in flight are closed by a reaper. A call gives up at its
deadline; the pool's `DeadlineWatch` wakes the calls whose deadline passed, and only
the rare waits (connecting, a socket far behind) take a cancel scope.
"""

from __future__ import annotations

import contextlib
import logging
import math
from types import TracebackType

import anyio
import anyio.abc
import attrs

from sofamesh.codecs import dubbo
from sofamesh.codecs.dubbo import DubboLimits, RequestFrame, ResponseFrame
from sofamesh.deadlines import DeadlineWatch
from sofamesh.protocols.dubbo.client import (
    CallTimeoutError,
    DubboClientConnection,
    HeartbeatConfig,
)
from sofamesh.transport.errors import ConnectError, PoolClosedError
from sofamesh.transport.net import Connect, connect

log = logging.getLogger("sofamesh.dubbo")


@attrs.frozen(kw_only=True)
class DubboPoolConfig:
    limits: DubboLimits = dubbo.DEFAULT_LIMITS
    connect_timeout: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    connections_per_endpoint: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    idle_timeout: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))
    heartbeats: HeartbeatConfig = attrs.field(factory=HeartbeatConfig)


class _Endpoint:
    __slots__ = ("connecting", "conns")

    def __init__(self) -> None:
        self.conns: list[DubboClientConnection] = []
        self.connecting = anyio.Lock()


class DubboPool:
    """`async with DubboPool(config) as pool: resp = await pool.call(host, port, frame)`."""

    def __init__(self, config: DubboPoolConfig | None = None) -> None:
        self.config = config or DubboPoolConfig()
        self._endpoints: dict[tuple[str, int], _Endpoint] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._stack = contextlib.AsyncExitStack()
        self._deadlines = DeadlineWatch()
        self.connections_opened = self.connect_errors = 0
        self.connect: Connect = connect  # mutual TLS replaces it (`use_tls`)

    async def __aenter__(self) -> DubboPool:
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
        conn = self._ready(host, port) or await self._connect_by(host, port, at)
        try:
            return await conn.call(frame, at)
        except ConnectError:  # closed under us before sending: once more, on a new one
            conn = await self._connect_by(host, port, at)
            return await conn.call(frame, at)

    def _ready(self, host: str, port: int) -> DubboClientConnection | None:
        """A connection to use now, if the endpoint has enough (no await: the hot path)."""
        ep = self._endpoints.get((host, port))
        return None if ep is None else self._pick(ep)

    async def _connect_by(self, host: str, port: int, at: float) -> DubboClientConnection:
        with anyio.CancelScope(deadline=at):
            return await self.connection(host, port)
        raise CallTimeoutError(f"no connection to {host}:{port} before the deadline")

    async def send_oneway(self, host: str, port: int, frame: RequestFrame) -> None:
        conn = await self.connection(host, port)
        await conn.send_oneway(frame)

    async def connection(self, host: str, port: int) -> DubboClientConnection:
        """A live connection to `host:port`, opening one if there are too few."""
        ep = self._endpoints.get((host, port))
        if ep is None:
            ep = self._endpoints[(host, port)] = _Endpoint()
        elif (conn := self._pick(ep)) is not None:
            return conn
        async with ep.connecting:
            return self._pick(ep) or await self._open(ep, host, port)

    def _pick(self, ep: _Endpoint) -> DubboClientConnection | None:
        conns = ep.conns
        if len(conns) < self.config.connections_per_endpoint:
            return None
        return min(conns, key=_load) if len(conns) > 1 else conns[0]

    async def _open(self, ep: _Endpoint, host: str, port: int) -> DubboClientConnection:
        if self._tg is None:
            raise PoolClosedError("the dubbo pool is closed")
        try:
            stream = await self.connect(host, port, self.config.connect_timeout)
        except ConnectError:
            self.connect_errors += 1
            raise
        conn = DubboClientConnection(
            stream, f"{host}:{port}", limits=self.config.limits,
            heartbeats=self.config.heartbeats, on_closed=lambda c: _discard(ep.conns, c),
            deadlines=self._deadlines,
        )  # fmt: skip
        await self._tg.start(conn.run)
        ep.conns.append(conn)
        self.connections_opened += 1
        return conn

    def connections_by_endpoint(self) -> dict[tuple[str, int], int]:
        """Open connections per (host, port): the admin's `upstream_cx_active`."""
        return {key: len(e.conns) for key, e in self._endpoints.items() if len(e.conns)}

    async def _reap_forever(self) -> None:
        """Close connections that carried no call for a whole `idle_timeout`."""
        seen: dict[DubboClientConnection, int] = {}
        while True:
            await anyio.sleep(self.config.idle_timeout)
            for key, ep in list(self._endpoints.items()):
                for conn in list(ep.conns):
                    if conn.in_flight == 0 and seen.get(conn) == conn.calls:
                        await conn.aclose()
                if not ep.conns and not ep.connecting.locked():
                    del self._endpoints[key]
            seen = {c: c.calls for ep in self._endpoints.values() for c in ep.conns}


def _load(conn: DubboClientConnection) -> int:
    return conn.in_flight


def _discard(conns: list[DubboClientConnection], conn: DubboClientConnection) -> None:
    with contextlib.suppress(ValueError):
        conns.remove(conn)
