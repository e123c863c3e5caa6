"""The orders of upstream drop, client close and timeout in which the client closes before
the deadline passes: its call is cancelled, so nobody is left to answer. What must hold
instead: the sidecar stays up and serves a second connection, nothing leaks (the service's
in-flight count in `/stats` and the connection counts return to 0), and the upstream
connection that dropped is replaced by a new one for the next call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import httpx
import pytest
from anyio.abc import ObjectReceiveStream
from dubbo_support import (
    PATIENCE,
    SERVICE,
    RawPeer,
    raw_client,
    raw_server,
    request,
    sidecar_config,
    sidecars,
    value_of,
)

from sofamesh.codecs import dubbo
from sofamesh.protocols.dubbo.pool import DubboPool
from sofamesh.protocols.dubbo.server import DubboServer
from sofamesh.sidecar.app import Sidecar
from sofamesh.testing.process import poll_until

pytestmark = pytest.mark.anyio

ORDERS = [
    ("upstream_drop", "client_close", "timeout"),
    ("client_close", "upstream_drop", "timeout"),
    ("client_close", "timeout", "upstream_drop"),
]
BUDGET_MS = 800  # the call's Dubbo timeout: long enough for the steps before it under load


class Watched:
    """The sidecar's state as the test reads it: `/stats` for the calls in flight; the
    connection counts from the listener's server and the Dubbo pool, which `/stats` lacks."""

    def __init__(self, car: Sidecar, http: httpx.AsyncClient) -> None:
        self.car = car
        self.http = http

    def _server(self) -> DubboServer | None:
        """The listener's server, once its first connection has built it (protocols/lazy.py)."""
        for server in self.car._servers:
            real = getattr(server, "real", server)
            if isinstance(real, DubboServer):
                return real
        return None

    def _pool(self) -> DubboPool | None:
        """The Dubbo pool, once the first call has loaded Dubbo."""
        pool = getattr(self.car.runtime.protocols["dubbo"], "pool", None)
        assert pool is None or isinstance(pool, DubboPool)
        return pool

    @property
    def pool(self) -> DubboPool:
        pool = self._pool()
        assert pool is not None, "read once a call has gone through"
        return pool

    async def in_flight(self) -> int:
        stats = (await self.http.get(f"http://{self.car.bound['admin']}/stats")).json()
        mine = ("inbound", SERVICE)
        return sum(
            s["rq_active"] for s in stats["services"] if (s["direction"], s["service"]) == mine
        )

    def client_connections(self) -> int:
        server = self._server()
        return 0 if server is None else server.statistics().active_connections

    def upstream_connections(self) -> int:
        pool = self._pool()
        return 0 if pool is None else sum(len(ep.conns) for ep in pool._endpoints.values())

    async def until(self, check: Callable[[], Awaitable[bool]]) -> None:
        """Poll the sidecar's state (nothing in it can wake the test) until `check` holds."""
        await poll_until(check, PATIENCE)


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
async def test_orders_where_the_client_closes_first(order: tuple[str, ...]) -> None:
    async with raw_server() as (up_port, accepted):
        cfg = sidecar_config(
            "prov", admin="127.0.0.1:0",
            inbound=[{"protocol": "dubbo", "listen": "127.0.0.1:0",
                      "upstream": f"127.0.0.1:{up_port}", "services": [SERVICE]}],
        )  # fmt: skip
        async with sidecars(cfg) as (car,), httpx.AsyncClient() as http:
            seen = Watched(car, http)
            port = car.bound["inbound[0]"].port
            client = RawPeer(await anyio.connect_tcp("127.0.0.1", port))
            await client.send(request(1, "wait", "", timeout=str(BUDGET_MS)))
            deadline = anyio.current_time() + BUDGET_MS / 1000
            upstream = await accepted.receive()
            assert await upstream.next_frame() is not None  # the call is in flight
            assert await seen.in_flight() == 1
            await _play(order, client, upstream, seen, deadline)
            await _settled(seen)
            assert seen.pool.connections_opened == 1
            await _served_again(port, accepted)
            assert seen.pool.connections_opened == 2  # the dropped connection was replaced
            assert (await http.get(f"http://{car.bound['admin']}/ready")).text == "LIVE\n"


async def _play(
    order: tuple[str, ...], client: RawPeer, upstream: RawPeer, seen: Watched, deadline: float
) -> None:
    closed = False
    for step in order:
        if step == "upstream_drop":
            await upstream.stream.aclose()
            if not closed:  # the client is there: it is told, before the deadline
                reset = await client.answer()
                assert reset.status == dubbo.Status.SERVER_ERROR
                assert "sofamesh(upstream_reset)" in dubbo.error_message(reset.body)
        elif step == "client_close":
            await client.stream.aclose()
            closed = True
            await seen.until(_no_calls(seen))
            assert anyio.current_time() < deadline  # cancelled, not left to time out
        else:  # the step is time passing: the deadline comes with nobody left waiting
            await anyio.sleep_until(deadline)
            assert await seen.in_flight() == 0


async def _settled(seen: Watched) -> None:
    """The cancelled call, the closed client and the dropped upstream all let go of."""

    async def idle() -> bool:
        conns = seen.client_connections(), seen.upstream_connections()
        return conns == (0, 0) and await seen.in_flight() == 0

    await seen.until(idle)


async def _served_again(port: int, accepted: ObjectReceiveStream[RawPeer]) -> None:
    """A well-behaved connection's call succeeds, through a new upstream connection."""
    async with raw_client(port) as again:
        await again.send(request(2, "echo", "Ljava/lang/String;", "x"))
        fresh = await accepted.receive()
        call = await fresh.next_frame()
        assert isinstance(call, dubbo.RequestFrame)
        await fresh.send(dubbo.reply(call, dubbo.Status.OK, dubbo.encode_response("x")))
        assert value_of(await again.answer()) == "x"


def _no_calls(seen: Watched) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await seen.in_flight() == 0

    return check
