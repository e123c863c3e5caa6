"""Dubbo 2 throughput, side by side in one run: direct, one sofamesh sidecar, Envoy dubbo_proxy.

    .venv/bin/python benchmarks/dubbo.py [--duration 10] [--runs 3] [--connections 16] [--window 32]
    .venv/bin/python benchmarks/dubbo.py --quick   # one 0.5 s round per path, no trio: a smoke run

Provider: the sofamesh SDK serving `com.example.DemoService:1.0.0` `echo`
(`mesh.serve_dubbo`, asyncio + uvloop), published in a file registry. The load generator
(raw asyncio protocols on uvloop, one process) keeps `--window` requests in flight on each
of `--connections` connections, each an `echo` with a 1 KB string argument framed as a
Dubbo consumer frames it (head, argument, attachments). Paths, same generator:

- direct: generator -> provider
- sofamesh: generator -> sidecar outbound listener (routes each request on the body's
  head: discovery on the file registry, the whole outbound chain, ids re-mapped on one
  upstream connection) -> provider; asyncio + uvloop, and trio
- envoy dubbo_proxy: generator -> Envoy 1.40 (`--concurrency 1`, the `dubbo_proxy` network
  filter routing by interface and method, ../shared/peers/dubbo/envoy/) -> provider

Rounds alternate the paths; the table gives the median round per path with the range over
rounds, and the CPU each process spent per request (from /proc). Prints Markdown.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from pathlib import Path
from typing import Any

from netutil import ROOT
from rpc_driver import RpcBench, drive, main

IFACE, VERSION = "com.example.DemoService", "1.0.0"  # what the shared Envoy config routes
SERVICE = f"{IFACE}:{VERSION}"

ENVOY_CONF = Path(os.environ.get("SOFAMESH_SHARED", ROOT.parent / "shared")) / (
    "peers/dubbo/envoy/dubbo_proxy.yaml"
)


# -- the provider process ----------------------------------------------------------------------


class Echo:
    def echo(self, value: Any) -> Any:
        return value


async def provide(port: int, registry: str) -> None:
    import anyio

    import sofamesh

    cfg = {"app": "bench-provider", "registry": registry}
    async with (
        sofamesh.open_mesh(cfg, env={}) as mesh,
        mesh.serve_dubbo(Echo(), interface=IFACE, version=VERSION, listen=f"127.0.0.1:{port}"),
    ):
        print("up", flush=True)
        await anyio.sleep_forever()


# -- the load generator ------------------------------------------------------------------------


def request_template() -> bytes:
    """One echo(1 KB string) request as a Dubbo consumer frames it."""
    from sofamesh.codecs import dubbo

    body = dubbo.RequestBody(
        path=IFACE, version=VERSION, method="echo", descriptor="Ljava/lang/String;",
        args=("x" * 1024,), attachments={"path": IFACE, "interface": IFACE, "version": VERSION,
                                         "timeout": "10000"},
    )  # fmt: skip
    return dubbo.encode(dubbo.RequestFrame(0, dubbo.encode_request(body)))


_RESPONSE = struct.Struct(">HBBQI")  # the Dubbo header


class Load(asyncio.Protocol):
    """One connection keeping `window` requests in flight; latencies in `record`."""

    def __init__(self, template: bytes, window: int, record: list[float], state: dict[str, Any]):
        self.template = bytearray(template)
        self.window = window
        self.record = record
        self.state = state
        self.buf = bytearray()
        self.sent: dict[int, float] = {}
        self.next_id = 1
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send(self.window)

    def _send(self, n: int) -> None:
        out = []
        now = time.perf_counter()
        for _ in range(n):
            rid = self.next_id
            self.next_id += 1
            struct.pack_into(">Q", self.template, 4, rid)
            out.append(bytes(self.template))
            self.sent[rid] = now
        assert self.transport is not None
        self.transport.write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        done, pos, now = 0, 0, time.perf_counter()
        while len(buf) - pos >= 16:
            _, _, status, rid, length = _RESPONSE.unpack_from(buf, pos)
            total = 16 + length
            if len(buf) - pos < total:
                break
            pos += total
            done += 1
            if status != 20:
                self.state["errors"] += 1
            if self.state["measuring"]:
                self.record.append(now - self.sent.pop(rid))
            else:
                self.sent.pop(rid, None)
        del buf[:pos]
        if done and not self.state["stopping"]:
            self._send(done)


async def generate(
    port: int, connections: int, window: int, duration: float, warmup: float
) -> dict[str, Any]:
    template = request_template()

    def load(record: list[float], state: dict[str, Any]) -> Load:
        return Load(template, window, record, state)

    return await drive(load, port, connections, duration, warmup)


# -- the paths and rounds (benchmarks/rpc_driver.py) ------------------------------------------


def envoy_conf(port: int, admin: int, upstream: int) -> str | None:
    """The shared dubbo_proxy config with this run's ports; None without ../shared."""
    if not ENVOY_CONF.exists():
        return None
    conf = ENVOY_CONF.read_text()
    for key, value in (("LISTEN", port), ("UPSTREAM", upstream), ("ADMIN", admin)):
        conf = conf.replace(f"@{key}_PORT@", str(value))
    return conf


SPEC = RpcBench("dubbo", __file__, provide, generate, "envoy 1.40 dubbo_proxy", envoy_conf, 79)

if __name__ == "__main__":
    main(SPEC)
