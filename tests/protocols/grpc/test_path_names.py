"""gRPC's one source of truth: `:path` names the service and method, normalised, in real processes.

grpcio client -> `python -m sofamesh.sidecar` (inbound grpc listener, an auth rule on
`/sofamesh.test.Echo/Unary`) -> grpcio server process. Spellings of the protected
path are judged as the path itself, and `x-sofamesh-service` metadata that names
another service than `:path` is refused with INVALID_ARGUMENT, inbound and outbound.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import grpc
import pytest
from grpc_support import Peers, channel

from sofamesh.demo.procs import Procs

pytestmark = pytest.mark.anyio
PEER = Path(__file__).with_name("grpcio_peer.py")
ECHO = "sofamesh.test.Echo"
UNARY = f"/{ECHO}/Unary"
RULES = {
    "version": "paths-1",
    "auth": {"inbound": {"rules": [{"service": ECHO, "method": UNARY, "allow": ["batch-app"]}]}},
}
SPELLINGS = [
    f"/{ECHO}//Unary",
    f"//{ECHO}/Unary",
    f"/{ECHO}/./Unary",
    f"/{ECHO}/x/../Unary",
    "/sofamesh.test.%45cho/Unary",
    f"/{ECHO}/%55nary",
]


@asynccontextmanager
async def mesh(tmp: Path, backend: str, peers: Peers) -> AsyncIterator[dict[str, str]]:
    stubs = Path(peers.echo.__file__).parent
    registry = f"file://{tmp}/registry?poll=0.05"
    async with Procs(tmp, backend) as procs:
        server = await procs.start("grpcio", [sys.executable, str(PEER), str(stubs)])
        inbound = {
            "protocol": "grpc",
            "listen": "127.0.0.1:0",
            "upstream": f"127.0.0.1:{server['port']}",
            "services": ["helloworld.Greeter", ECHO],
        }
        config = {"app": "echo", "registry": registry, "rules": RULES, "inbound": [inbound]}
        provider = await procs.sidecar("echo", config)
        out = {"protocol": "grpc", "listen": "127.0.0.1:0"}
        shop = await procs.sidecar("web", {"app": "web", "registry": registry, "outbound": [out]})
        yield {"inbound": provider["inbound[0]"], "outbound": shop["outbound[0]"]}


def unary(
    peers: Peers, address: str, path: str, metadata: list[tuple[str, str]]
) -> tuple[grpc.StatusCode, str]:
    """Call `path` with an Echo `Msg`; (code, reply text or error details)."""
    Msg = peers.echo.Msg
    with channel(address) as ch:
        call: Callable[..., Any] = ch.unary_unary(
            path,
            request_serializer=Msg.SerializeToString,
            response_deserializer=Msg.FromString,
        )
        try:
            reply = call(Msg(text="u"), metadata=metadata, timeout=10)
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or ""
        return grpc.StatusCode.OK, reply.text


async def test_spellings_of_a_protected_method_are_judged_as_it(
    tmp_path: Path, anyio_backend: str, peers: Peers
) -> None:
    async with mesh(tmp_path, anyio_backend, peers) as m:

        def calls() -> list[tuple[str, str, tuple[grpc.StatusCode, str]]]:
            out = []
            for path in [UNARY, *SPELLINGS]:
                for caller in ("web", "batch-app"):
                    meta = [("x-sofamesh-caller", caller)]
                    out.append((path, caller, unary(peers, m["inbound"], path, meta)))
            return out

        with anyio.fail_after(60):
            results = await anyio.to_thread.run_sync(calls)
    for path, caller, (code, text) in results:
        if caller == "web":
            assert code == grpc.StatusCode.PERMISSION_DENIED, (path, code, text)
        else:  # the provider ran Unary: it dispatched on the normalised :path
            assert (code, text) == (grpc.StatusCode.OK, "echo:u"), path


async def test_a_service_header_that_contradicts_the_path_is_refused(
    tmp_path: Path, anyio_backend: str, peers: Peers
) -> None:
    async with mesh(tmp_path, anyio_backend, peers) as m:

        def calls() -> dict[str, tuple[grpc.StatusCode, str]]:
            other = [
                ("x-sofamesh-service", "helloworld.Greeter"),
                ("x-sofamesh-caller", "batch-app"),
            ]
            same = [("x-sofamesh-service", ECHO), ("x-sofamesh-caller", "batch-app")]
            return {
                "inbound other": unary(peers, m["inbound"], UNARY, other),
                "outbound other": unary(peers, m["outbound"], UNARY, other[:1]),
                "inbound same": unary(peers, m["inbound"], UNARY, same),
                "escaped slash": unary(peers, m["inbound"], f"/{ECHO}%2FUnary", same),
            }

        with anyio.fail_after(60):
            got = await anyio.to_thread.run_sync(calls)
    assert got["inbound other"][0] == grpc.StatusCode.INVALID_ARGUMENT
    assert "contradicts" in got["inbound other"][1]
    assert got["outbound other"][0] == grpc.StatusCode.INVALID_ARGUMENT
    assert got["inbound same"] == (grpc.StatusCode.OK, "echo:u")
    assert got["escaped slash"][0] == grpc.StatusCode.INVALID_ARGUMENT
