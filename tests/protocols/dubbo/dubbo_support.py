"""Helpers for the Dubbo tests: the sofa-rpc-node Dubbo peers (started by the tests
themselves), raw Dubbo peers driven frame by frame, and in-process sidecars."""

from __future__ import annotations

import os
import select
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from sofamesh.codecs import dubbo
from sofamesh.config import Address, load_config
from sofamesh.sidecar.app import Sidecar

REPO = Path(__file__).resolve().parents[3]
SERVICE = "com.example.DemoService:1.0.0"
NODE_TIMEOUT = 20.0
PATIENCE = 10.0  # seconds a test waits for a frame before failing instead of hanging


def node_dir() -> Path:
    """The built Dubbo peers (fails the test, never skips, when they are missing)."""
    base = Path(os.environ.get("SOFAMESH_PEERS_DIR", REPO / "build" / "peers"))
    path = base / "dubbo" / "node"
    if not (path / "node_modules" / "dubbo-remoting" / "package.json").is_file():
        pytest.fail(
            f"Dubbo peers not found in {path}: run scripts/setup.sh (or "
            f"`bash ../shared/peers/dubbo/setup_peers.sh {path.parent}`)",
            pytrace=False,
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def node_provider() -> Iterator[int]:
    """server.js (com.example.DemoService:1.0.0) on a free port; yields the port."""
    port = free_port()
    proc = subprocess.Popen(
        ["node", "server.js", str(port)], cwd=node_dir(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], NODE_TIMEOUT)
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("LISTENING "):
            raise AssertionError(f"node server.js did not start: {line!r}")
        yield port
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


async def node_call(port: int, method: str, *args: str, calls: int = 1) -> list[str]:
    """client.js against 127.0.0.1:port: one "RESULT <json>" / "ERROR <msg>" per call."""
    env = {**os.environ, "CALLS": str(calls)}
    with anyio.fail_after(NODE_TIMEOUT):
        done = await anyio.run_process(
            ["node", "client.js", "127.0.0.1", str(port), SERVICE, method, *args],
            cwd=node_dir(), env=env, check=False,
        )  # fmt: skip
    lines = done.stdout.decode().strip().splitlines()
    assert done.returncode == 0, done.stderr.decode()[-500:]
    return lines


class RawPeer:
    """One TCP connection spoken to frame by frame."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.decoder = dubbo.FrameDecoder()

    async def send(self, *frames: dubbo.Frame | bytes) -> None:
        raw = b"".join(f if isinstance(f, bytes) else dubbo.encode(f) for f in frames)
        await self.stream.send(raw)

    async def next_frame(self) -> dubbo.Frame | None:
        """The next frame, or None once the other side closed."""
        with anyio.fail_after(PATIENCE):
            while (frame := self.decoder.next_frame()) is None:
                try:
                    data = await self.stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return None
                self.decoder.receive_data(data)
        return frame

    async def answer(self) -> dubbo.ResponseFrame:
        frame = await self.next_frame()
        assert isinstance(frame, dubbo.ResponseFrame), frame
        return frame


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
        async with stream:
            await send.send(RawPeer(stream))
            await anyio.sleep_forever()

    async with listener, send, receive, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, accept)
        yield port, receive
        tg.cancel_scope.cancel()


def request(rid: int, method: str, descriptor: str, *args: Any, **attachments: str) -> bytes:
    """A request frame's bytes, as a Dubbo consumer writes them."""
    path, version = SERVICE.split(":")
    body = dubbo.RequestBody(
        path=path, version=version, method=method, descriptor=descriptor, args=args,
        attachments={"path": path, "version": version, **attachments},
    )  # fmt: skip
    return dubbo.encode(dubbo.RequestFrame(rid, dubbo.encode_request(body)))


def value_of(frame: dubbo.ResponseFrame) -> Any:
    assert frame.status == dubbo.Status.OK, dubbo.error_message(frame.body)
    got = dubbo.decode_response(frame.body)
    assert not got.is_exception, got.value
    return got.value


def sidecar_config(app: str, **listeners: Any) -> Any:
    return load_config({"app": app, "registry": "memory://", **listeners}, env={})


@asynccontextmanager
async def sidecars(*configs: Any) -> AsyncIterator[list[Sidecar]]:
    cars = [Sidecar(c) for c in configs]
    async with anyio.create_task_group() as tg:
        for car in cars:
            await tg.start(car.run)
        yield cars
        for car in cars:
            car.stop()


@asynccontextmanager
async def meshed(upstream_port: int, **consumer: Any) -> AsyncIterator[tuple[Address, Address]]:
    """consumer sidecar -> provider sidecar -> the app on `upstream_port`; yields the
    consumer's outbound address and the provider's inbound one."""
    prov = sidecar_config(
        "prov", inbound=[{"protocol": "dubbo", "listen": "127.0.0.1:0",
                          "upstream": f"127.0.0.1:{upstream_port}", "services": [SERVICE]}],
    )  # fmt: skip
    cons = sidecar_config(
        "shop", outbound=[{"protocol": "dubbo", "listen": "127.0.0.1:0"}], **consumer
    )
    async with sidecars(prov, cons) as (p, c):
        yield c.bound["outbound[0]"], p.bound["inbound[0]"]
