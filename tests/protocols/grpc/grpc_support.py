"""Stubs generated at test time, and grpcio peers that run on their own threads.

grpcio's synchronous server and client run outside the event loop, so the same
peers serve tests on asyncio and on trio (clients are called through
`anyio.to_thread.run_sync`).
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc

ROOT = Path(__file__).resolve().parents[3]
HELLOWORLD = ROOT.parent / "shared" / "peers" / "infra" / "grpc" / "helloworld.proto"
ECHO = Path(__file__).with_name("protos") / "echo.proto"
BIG = 8 * 1024 * 1024  # message size limit for both grpcio peers (the default is 4 MiB)
OPTIONS = [("grpc.max_receive_message_length", BIG), ("grpc.max_send_message_length", BIG)]


def generate(out: Path) -> dict[str, ModuleType]:
    """protoc with the grpcio and grpclib plugins into `out`; the generated modules, by name."""
    protos = out / "protos"
    protos.mkdir(parents=True, exist_ok=True)
    for src in (HELLOWORLD, ECHO):
        shutil.copy(src, protos / src.name)
    plugin = Path(sys.executable).with_name("protoc-gen-grpclib_python")
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--plugin=protoc-gen-grpclib_python={plugin}",
        f"-I{protos}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--grpclib_python_out={out}",
        "helloworld.proto",
        "echo.proto",
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    return import_generated(out)


def import_generated(out: Path) -> dict[str, ModuleType]:
    """The generated modules in `out` (they import each other top-level: `out` joins the path)."""
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    names = [f"{p}{s}" for p in ("helloworld", "echo") for s in ("_pb2", "_pb2_grpc", "_grpc")]
    return {n: importlib.import_module(n) for n in names}


class Peers:
    """The generated modules, and the grpcio services of the tests."""

    def __init__(self, mods: dict[str, ModuleType]) -> None:
        self.mods = mods
        self.hw = mods["helloworld_pb2"]
        self.echo = mods["echo_pb2"]
        self.release = threading.Event()  # set at teardown: frees handlers that hang

    def serve(self) -> tuple[grpc.Server, int]:
        """A grpcio server with Greeter and Echo on 127.0.0.1."""
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=32), options=OPTIONS)
        self.mods["helloworld_pb2_grpc"].add_GreeterServicer_to_server(_greeter(self), server)
        self.mods["echo_pb2_grpc"].add_EchoServicer_to_server(_echo(self), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        return server, port

    def greeter(self, channel: grpc.Channel) -> Any:
        return self.mods["helloworld_pb2_grpc"].GreeterStub(channel)

    def echo_stub(self, channel: grpc.Channel) -> Any:
        return self.mods["echo_pb2_grpc"].EchoStub(channel)


def channel(address: object) -> grpc.Channel:
    return grpc.insecure_channel(str(address), options=OPTIONS)


def _greeter(peers: Peers) -> Any:
    hw = peers.hw

    class Greeter(peers.mods["helloworld_pb2_grpc"].GreeterServicer):  # type: ignore[misc, name-defined]
        def SayHello(self, request: Any, context: Any) -> Any:
            context.set_trailing_metadata((("x-left", f"{context.time_remaining():.3f}"),))
            return hw.HelloReply(message=f"Hello {request.name} from grpcio")

        def SayHelloStream(self, request: Any, context: Any) -> Iterator[Any]:
            for i in range(3):
                yield hw.HelloReply(message=f"Hello {request.name} #{i} from grpcio")

    return Greeter()


def _echo(peers: Peers) -> Any:
    Msg = peers.echo.Msg

    class Echo(peers.mods["echo_pb2_grpc"].EchoServicer):  # type: ignore[misc, name-defined]
        def Unary(self, request: Any, context: Any) -> Any:
            if request.code:
                context.set_trailing_metadata((("x-why", "asked"),))
                context.abort(grpc.StatusCode(_code(request.code)), request.text)
            caller = dict(context.invocation_metadata()).get("x-sofamesh-caller", "")
            return Msg(text=f"echo:{request.text}", blob=request.blob, count=len(caller))

        def ServerStream(self, request: Any, context: Any) -> Iterator[Any]:
            for i in range(request.count):
                yield Msg(text=f"{request.text}#{i}")
                if request.hang:
                    peers.release.wait(30)  # until the deadline cancels the call
                    return

        def ClientStream(self, requests: Iterator[Any], context: Any) -> Any:
            texts = [r.text for r in requests]
            return Msg(text="+".join(texts), count=len(texts))

        def Bidi(self, requests: Iterator[Any], context: Any) -> Iterator[Any]:
            for r in requests:
                yield Msg(text=f"re:{r.text}", blob=r.blob)

    return Echo()


def _code(value: int) -> tuple[int, str]:
    return next(c.value for c in grpc.StatusCode if c.value[0] == value)
