"""What the mesh answers itself, and how it classifies what providers answer.

A listener whose chain stops the call (a rate limit, an auth rule, a deadline)
answers with the issue's gRPC status; provider statuses are classified for
governance (`Result.status`), and a hop that never reached its app is retried
elsewhere with the request body replayed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import grpc
import pytest
from grpc_support import Peers, channel

from sofamesh.clock import MonotonicClock
from sofamesh.config import load_config
from sofamesh.model import Invocation, Result, Status
from sofamesh.protocols.grpc.support import GrpcListener, GrpcSupport
from sofamesh.protocols.h2.server import H2Server
from sofamesh.protocols.h2.support import H2Support
from sofamesh.sidecar.app import Sidecar

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def listener_with(chain: Callable[[Invocation], Any]) -> AsyncIterator[int]:
    server = H2Server(GrpcListener(lambda _inv: chain, MonotonicClock(), enforce_deadline=True))
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve, listener)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()


async def in_thread(fn: Callable[[], Any]) -> Any:
    with anyio.fail_after(30):
        return await anyio.to_thread.run_sync(fn)


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (Status.RATE_LIMITED, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (Status.UNAUTHORIZED, grpc.StatusCode.PERMISSION_DENIED),
        (Status.NO_ENDPOINT, grpc.StatusCode.UNAVAILABLE),
        (Status.CIRCUIT_OPEN, grpc.StatusCode.UNAVAILABLE),
        (Status.TIMEOUT, grpc.StatusCode.DEADLINE_EXCEEDED),
    ],
)
async def test_mesh_made_failures_are_grpc_statuses(
    peers: Peers, status: Status, code: grpc.StatusCode
) -> None:
    seen: list[Invocation] = []

    async def stop(inv: Invocation) -> Result:
        seen.append(inv)
        return Result.failure(status, f"{inv.service}: stopped by a rule")

    async with listener_with(stop) as port:

        def call() -> grpc.RpcError:
            with channel(f"127.0.0.1:{port}") as ch, pytest.raises(grpc.RpcError) as exc:
                peers.echo_stub(ch).Unary(peers.echo.Msg(text="x"), timeout=5)
            return exc.value

        err = await in_thread(call)
    assert err.code() is code
    assert err.details() == "sofamesh.test.Echo: stopped by a rule"
    assert ("x-sofamesh-error", status.value) in err.trailing_metadata()
    inv = seen[0]
    assert (inv.protocol, inv.service, inv.method) == (
        "grpc",
        "sofamesh.test.Echo",
        "/sofamesh.test.Echo/Unary",
    )
    assert inv.deadline is not None  # grpc-timeout became the deadline


async def test_a_call_past_its_deadline_here_is_deadline_exceeded(peers: Peers) -> None:
    async def slow(inv: Invocation) -> Result:
        await anyio.sleep_forever()
        raise AssertionError

    async with listener_with(slow) as port:

        def call() -> grpc.RpcError:
            with channel(f"127.0.0.1:{port}") as ch, pytest.raises(grpc.RpcError) as exc:
                peers.echo_stub(ch).Unary(peers.echo.Msg(text="x"), timeout=0.3)
            return exc.value

        err = await in_thread(call)
    assert err.code() is grpc.StatusCode.DEADLINE_EXCEEDED


async def test_provider_statuses_are_classified_for_governance(
    peers: Peers, grpcio_server: int
) -> None:
    from sofamesh.config.model import PolicyConfig
    from sofamesh.protocols.h2.call import QueueSink, QueueSource, ReplayableBody, StreamCall

    results = {}
    h2 = H2Support(PolicyConfig(), MonotonicClock())
    async with h2, GrpcSupport(PolicyConfig(), MonotonicClock(), h2) as support:
        for code in (0, 5, 14, 13):
            source = QueueSource()
            body = peers.echo.Msg(text="x", code=code).SerializeToString()
            await source.send(b"\0" + len(body).to_bytes(4, "big") + body)
            source.end()
            call = StreamCall("/sofamesh.test.Echo/Unary", "", ReplayableBody(source), QueueSink())
            inv = Invocation(protocol="grpc", service="sofamesh.test.Echo", method=call.path)
            inv.payload = call
            results[code] = await support.send("127.0.0.1", grpcio_server, inv)
    assert {c: (r.status, r.code) for c, r in results.items()} == {
        0: (Status.OK, 0),
        5: (Status.OK, 5),  # NOT_FOUND: the caller's problem, not the host's
        14: (Status.APP_ERROR, 14),  # UNAVAILABLE counts against the provider
        13: (Status.APP_ERROR, 13),
    }


async def test_a_hop_that_never_reached_its_app_is_retried_elsewhere(
    peers: Peers, grpcio_server: int
) -> None:
    """Provider A's app is down: its sidecar says so; the caller retries on B with the body."""
    dead = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    dead_port = dead.extra(anyio.abc.SocketAttribute.local_port)
    await dead.aclose()

    def provider(app: str, upstream: int) -> Sidecar:
        lc = {
            "protocol": "grpc",
            "listen": "127.0.0.1:0",
            "upstream": f"127.0.0.1:{upstream}",
            "services": ["sofamesh.test.Echo"],
        }
        return Sidecar(load_config({"app": app, "registry": "memory://", "inbound": [lc]}, env={}))

    out = {"protocol": "grpc", "listen": "127.0.0.1:0"}
    cons = Sidecar(load_config({"app": "shop", "registry": "memory://", "outbound": [out]}, env={}))
    sidecars = [provider("a", dead_port), provider("b", grpcio_server), cons]
    async with anyio.create_task_group() as tg:
        for s in sidecars:
            await tg.start(s.run)
        address = cons.bound["outbound[0]"]

        def calls() -> list[str]:
            with channel(address) as ch:
                stub = peers.echo_stub(ch)
                return [stub.Unary(peers.echo.Msg(text=str(i)), timeout=5).text for i in range(6)]

        assert await in_thread(calls) == [f"echo:{i}" for i in range(6)]
        assert cons.runtime.stats.counters.get("upstream_rq_retry", 0) >= 1
        for s in sidecars:
            s.stop()


def test_listener_limits_become_h2_limits() -> None:
    from sofamesh.config.model import LimitsConfig
    from sofamesh.protocols.h2.listener import h2_limits

    assert h2_limits(LimitsConfig(max_header_bytes=8192)).max_header_list_size == 8192
    assert h2_limits(None).max_concurrent_streams == 1000
