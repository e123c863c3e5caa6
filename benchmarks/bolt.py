"""Bolt throughput, side by side in one run: direct, one sofamesh sidecar, Envoy tcp_proxy.

    .venv/bin/python benchmarks/bolt.py [--duration 10] [--runs 3] [--connections 16] [--window 32]
    .venv/bin/python benchmarks/bolt.py --quick   # one 0.5 s round per path, no trio: a smoke run

Provider: the sofamesh SDK serving `echo` (`mesh.serve_bolt`, asyncio + uvloop), published
in a file registry. The load generator (raw asyncio protocols on uvloop, one process) keeps
`--window` requests in flight on each of `--connections` connections, each an `echo` with a
1 KB string argument framed as Java SOFARPC frames it (service, method and trace headers).
Paths, each measured with the same generator:

- direct: generator -> provider
- sofamesh: generator -> sidecar outbound listener (routes each request on its `service`
  header: discovery on the file registry, the whole outbound chain, ids re-mapped on one
  upstream connection) -> provider; asyncio + uvloop, and trio
- envoy tcp_proxy: generator -> Envoy 1.40 (`--concurrency 1`, L4 `tcp_proxy`, which
  relays bytes and cannot route per request) -> provider

Rounds alternate the paths so that drift on a noisy machine hits each alike; the table gives
the median round per path with the range over rounds, and the CPU each process spent per
request (from /proc). Prints Markdown (paste into docs/performance.md).
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any

from rpc_driver import RpcBench, drive, main

IFACE, VERSION = "com.example.bench.EchoService", "1.0"
SERVICE = f"{IFACE}:{VERSION}"

ENVOY_CONF = """
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: bolt
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: bolt
          cluster: provider
  clusters:
  - name: provider
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: provider
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {upstream} }} }} }}
"""


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
        mesh.serve_bolt(Echo(), IFACE, version=VERSION, listen=f"127.0.0.1:{port}"),
    ):
        print("up", flush=True)
        await anyio.sleep_forever()


# -- the load generator ------------------------------------------------------------------------


def request_template() -> bytes:
    """One echo(1 KB string) request as Java SOFARPC frames it."""
    from sofamesh.codecs.bolt import encode, request
    from sofamesh.codecs.bolt.sofarpc import SofaRequest, encode_request

    trace = {"sofaTraceId": "7f0000011700000000001000123", "sofaRpcId": "0", "sofaCallerApp": "gen"}
    body = encode_request(
        SofaRequest("echo", ["java.lang.String"], SERVICE, None, {"rpc_trace_context": trace}),
        ["x" * 1024],
    )
    headers = {
        "service": SERVICE, "sofa_head_target_service": SERVICE, "sofa_head_method_name": "echo",
        **{f"rpc_trace_context.{k}": v for k, v in trace.items()},
    }  # fmt: skip
    return encode(request(0, body, headers=headers, timeout_ms=10_000))


_RESPONSE = struct.Struct(">BBHBiBHhhi")  # Bolt v1 response fixed header


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
            struct.pack_into(">i", self.template, 5, rid)
            out.append(bytes(self.template))
            self.sent[rid] = now
        assert self.transport is not None
        self.transport.write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        done, pos, now = 0, 0, time.perf_counter()
        while len(buf) - pos >= 20:
            _, _, _, _, rid, _, status, cl, hl, bl = _RESPONSE.unpack_from(buf, pos)
            total = 20 + cl + hl + bl
            if len(buf) - pos < total:
                break
            pos += total
            done += 1
            if status != 0:
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


def envoy_conf(port: int, admin: int, upstream: int) -> str:
    return ENVOY_CONF.format(port=port, admin=admin, upstream=upstream)


SPEC = RpcBench("bolt", __file__, provide, generate, "envoy 1.40 tcp_proxy", envoy_conf, 78)

if __name__ == "__main__":
    main(SPEC)
