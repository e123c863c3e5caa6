"""The issue's interop in real processes: grpcio client -> sidecar -> sidecar -> grpcio server.

Each sidecar is `python -m sofamesh.sidecar` on the test's backend, configured
with `protocol: grpc` listeners and discovering through the file registry.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from grpc_support import Peers, channel

from sofamesh.demo.procs import Procs

pytestmark = pytest.mark.anyio
PEER = Path(__file__).with_name("grpcio_peer.py")


async def test_grpcio_through_two_sidecar_processes(
    tmp_path: Path, anyio_backend: str, peers: Peers
) -> None:
    stubs = Path(peers.echo.__file__).parent
    registry = f"file://{tmp_path}/registry?poll=0.05"
    async with Procs(tmp_path, anyio_backend) as procs:
        server = await procs.start("grpcio", [sys.executable, str(PEER), str(stubs)])
        inbound = {
            "protocol": "grpc",
            "listen": "127.0.0.1:0",
            "upstream": f"127.0.0.1:{server['port']}",
            "services": ["helloworld.Greeter", "sofamesh.test.Echo"],
        }
        await procs.sidecar("orders", {"app": "orders", "registry": registry, "inbound": [inbound]})
        out = {"protocol": "grpc", "listen": "127.0.0.1:0"}
        shop = await procs.sidecar("shop", {"app": "shop", "registry": registry, "outbound": [out]})
        address = shop["outbound[0]"]
        Msg = peers.echo.Msg

        def calls() -> tuple[Any, ...]:
            with channel(address) as ch:
                hello = peers.greeter(ch).SayHello(peers.hw.HelloRequest(name="p"), timeout=10)
                stub = peers.echo_stub(ch)
                stream = [m.text for m in stub.ServerStream(Msg(text="s", count=3), timeout=10)]
                joined = stub.ClientStream(iter([Msg(text="a"), Msg(text="b")]), timeout=10)
                bidi = [m.text for m in stub.Bidi(iter([Msg(text="x"), Msg(text="y")]), timeout=10)]
                unary = stub.Unary(Msg(text="u"), timeout=10)
                return hello.message, stream, joined.text, bidi, unary

        with anyio.fail_after(30):
            hello, stream, joined, bidi, unary = await anyio.to_thread.run_sync(calls)
        assert hello == "Hello p from grpcio"
        assert stream == ["s#0", "s#1", "s#2"]
        assert joined == "a+b"
        assert bidi == ["re:x", "re:y"]
        assert (unary.text, unary.count) == ("echo:u", len("shop"))  # the caller's name travelled
