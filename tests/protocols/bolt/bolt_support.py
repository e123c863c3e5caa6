"""Helpers for the Bolt tests: servers on loopback port 0, raw Bolt peers that the test
drives frame by frame, in-process sidecars, and the sofa-rpc-node peers."""

from __future__ import annotations

import os
import select
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from tests.codecs.hessian2.hessian2_support import peers_dir

from sofamesh.codecs.bolt import FrameDecoder, RequestFrame, ResponseFrame, encode
from sofamesh.config import Address, load_config
from sofamesh.protocols.bolt.server import BoltHandler, BoltServer
from sofamesh.sidecar.app import Sidecar

SERVICE = "com.example.EchoService:1.0"
NODE_TIMEOUT = 20.0
PATIENCE = 10.0  # seconds a test waits for a frame before failing instead of hanging


@asynccontextmanager
async def serving(server: BoltServer) -> AsyncIterator[int]:
    """Run `server` on 127.0.0.1 (a free port) until the block ends; yields the port."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve, listener)
        yield port
        tg.cancel_scope.cancel()


@asynccontextmanager
async def bolt_server(
    handler: BoltHandler, **options: Any
) -> AsyncIterator[tuple[BoltServer, int]]:
    server = BoltServer(handler, **options)
    async with serving(server) as port:
        yield server, port


class RawPeer:
    """One TCP connection spoken to frame by frame (a client or an accepted server side)."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.decoder = FrameDecoder()

    async def send(self, *frames: RequestFrame | ResponseFrame | bytes) -> None:
        await self.stream.send(b"".join(f if isinstance(f, bytes) else encode(f) for f in frames))

    async def next_frame(self) -> RequestFrame | ResponseFrame | None:
        """The next frame, or None once the other side closed."""
        with anyio.fail_after(PATIENCE):
            while (frame := self.decoder.next_frame()) is None:
                try:
                    data = await self.stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return None
                self.decoder.receive_data(data)
        return frame

    async def closed(self) -> bool:
        """True once the other side closed (frames still in flight are skipped)."""
        while await self.next_frame() is not None:
            pass
        return True


@asynccontextmanager
async def raw_client(port: int) -> AsyncIterator[RawPeer]:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        yield RawPeer(stream)


@asynccontextmanager
async def raw_server() -> AsyncIterator[tuple[int, anyio.abc.ObjectReceiveStream[RawPeer]]]:
    """A listener whose accepted connections the test receives as `RawPeer`s."""
    send, receive = anyio.create_memory_object_stream[RawPeer](10)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def accept(stream: anyio.abc.SocketStream) -> None:
        async with stream:  # the test owns the connection until the block ends
            await send.send(RawPeer(stream))
            await anyio.sleep_forever()

    async with listener, send, receive, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, accept)
        yield port, receive
        tg.cancel_scope.cancel()


def sidecar_config(app: str, **listeners: Any) -> Any:
    return load_config({"app": app, "registry": "memory://", **listeners}, env={})


@asynccontextmanager
async def sidecars(*configs: Any) -> AsyncIterator[list[Sidecar]]:
    """Run sidecars in this process (sharing the process-wide memory registry)."""
    cars = [Sidecar(c) for c in configs]
    async with anyio.create_task_group() as tg:
        for car in cars:
            await tg.start(car.run)
        yield cars
        for car in cars:
            car.stop()


def outbound(car: Sidecar) -> Address:
    return car.bound["outbound[0]"]


# -- sofa-rpc-node peers ---------------------------------------------------------------------


def node_dir() -> Path:
    """The built Node peers (fails the test, never skips, when they are missing)."""
    return peers_dir() / "node"


def node_env(hessian: str = "4.0") -> dict[str, str]:
    return {**os.environ, "HESSIAN_VERSION": hessian}


@contextmanager
def node_server(hessian: str = "4.0") -> Iterator[int]:
    """sofa-rpc-node's server.js on a free port; yields the port from its LISTENING line."""
    proc = subprocess.Popen(
        ["node", "server.js", "0"], cwd=node_dir(), env=node_env(hessian),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], NODE_TIMEOUT)
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("LISTENING "):
            raise AssertionError(f"node server.js did not start: {line!r} {proc.stderr!r}")
        yield int(line.split()[1].rsplit(":", 1)[1])
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


async def node(script: str, *args: Any, hessian: str = "4.0") -> tuple[int, str]:
    """Run a Node peer script to completion: (exit code, its stdout's last line)."""
    with anyio.fail_after(NODE_TIMEOUT):
        done = await anyio.run_process(
            ["node", script, *map(str, args)], cwd=node_dir(), env=node_env(hessian), check=False
        )
    lines = done.stdout.decode().strip().splitlines()
    return done.returncode, lines[-1] if lines else done.stderr.decode()[-500:]


async def node_call(port: int, method: str, *args: str, service: str = SERVICE, **kw: Any) -> str:
    """client.js against 127.0.0.1:port: "RESULT <json>" or "ERROR <message>"."""
    _, line = await node("client.js", "127.0.0.1", port, service, method, *args, **kw)
    return line
