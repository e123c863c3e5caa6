"""The targets `attack.py` attacks: a counting upstream, a sofamesh sidecar, Envoy 1.40.

Both proxies get the same three doors, so one attack client fits both:

- `h1`: HTTP/1.1 to the upstream (sofamesh: an outbound `http` listener, `Host: attacked`
  resolved in a file registry; Envoy: an HTTP connection manager, one route);
- `h2`: HTTP/2 cleartext (sofamesh: an inbound `h2` listener for `H2_SERVICE` in front of
  the upstream's h2c port; Envoy: `codec_type: HTTP2` to the upstream's HTTP/1.1 port);
- `bolt`: SOFA Bolt (sofamesh: an inbound `bolt` listener; Envoy: L4 `tcp_proxy`, as in
  benchmarks/bolt.py) in front of an SDK Bolt provider.

The upstream process (`python benchmarks/attack_targets.py upstream DIR`) counts every HTTP
request it answers (both ports), answers `/big` with `BIG` bytes and `/count` with the count.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netutil import (
    ENVOY,
    free_port,
    rss_mib,
    start_sidecar,
    stop_all,
    wait_port,
)

H1_SERVICE = "attacked"
# Served by two upstream processes (the second only serves this): `frozen_provider` stops
# one of them. Both proxies retry a try that times out elsewhere and eject on timeouts.
PAIR_SERVICE = "pair"
PER_TRY_TIMEOUT = 0.25
PAIR_TIMEOUT = 2.0
H2_SERVICE = "com.example.Attacked"
BOLT_IFACE, BOLT_VERSION = "com.example.Echo", "1.0"
BIG = 10 * 1024 * 1024

ENVOY_HCM = """
  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          codec_type: {codec}
          route_config:
            virtual_hosts:
            - name: pair
              domains: ["pair", "pair:*"]
              routes:
              - match: {{ prefix: "/" }}
                route:
                  cluster: pair_upstream
                  timeout: 2s
                  retry_policy:
                    retry_on: "5xx,reset,connect-failure"
                    num_retries: 2
                    per_try_timeout: 0.25s
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: http_upstream }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"""

ENVOY_CONF = """
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:{h1}{h2}
  - name: bolt
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {bolt} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: bolt
          cluster: bolt_upstream
  clusters:
  - name: http_upstream
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: http_upstream
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {up_h1} }} }} }}
  - name: pair_upstream
    type: STATIC
    connect_timeout: 1s
    outlier_detection:
      consecutive_5xx: 5
      interval: 1s
      base_ejection_time: 30s
      max_ejection_percent: 50
    load_assignment:
      cluster_name: pair_upstream
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {up_h1} }} }} }}
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {up2_h1} }} }} }}
  - name: bolt_upstream
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: bolt_upstream
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {up_bolt} }} }} }}
"""


@dataclass
class Upstream:
    proc: subprocess.Popen[bytes]
    h1: int
    h2: int
    bolt: int

    def wait_up(self) -> None:
        """Return once the process serves (it says so on its first line)."""
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"up":
            raise RuntimeError("the upstream did not start")

    def count(self) -> int:
        """HTTP requests the upstream has answered so far (both ports)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.h1, timeout=5)
        try:
            conn.request("GET", "/count")
            return int(conn.getresponse().read())
        finally:
            conn.close()


@dataclass
class Target:
    """One proxy process and its doors."""

    name: str
    proc: subprocess.Popen[bytes]
    h1: int
    h2: int
    bolt: int
    admin: int
    extra: list[subprocess.Popen[bytes]] = field(default_factory=list)
    pair: subprocess.Popen[bytes] | None = None  # the second provider of PAIR_SERVICE

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_mib(self) -> float:
        return rss_mib(self.proc.pid)

    def prometheus_lines(self) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=10)
        try:
            conn.request("GET", "/stats/prometheus")
            return len(conn.getresponse().read().splitlines())
        finally:
            conn.close()

    def stop(self) -> None:
        stop_all([self.proc, *self.extra])


class RssSampler:
    """The largest RSS of `pid` seen while the `with` block runs (sampled every 50 ms)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, rss_mib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_mib(self.pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def start_upstream(tmp: Path, services: tuple[str, ...] = (H1_SERVICE, PAIR_SERVICE)) -> Upstream:
    """The counting upstream, starting (`wait_up` before using it, so that other processes
    start meanwhile); `services`: what it publishes for its HTTP/1.1 port."""
    ports = {"h1": free_port(), "h2": free_port(), "bolt": free_port()}
    argv = [sys.executable, __file__, "upstream", str(tmp / "registry"), json.dumps(ports),
            json.dumps(services)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return Upstream(proc, **ports)


# The pair's policy and retries, as Envoy's route and cluster above have them.
PAIR_RULES = {"routes": [{"service": PAIR_SERVICE, "retry": {
    "attempts": 3, "retry_on": ["connect_failure", "reset", "gateway_error", "timeout"],
    "per_try_timeout": PER_TRY_TIMEOUT}}]}  # fmt: skip


def start_sofamesh(
    tmp: Path, up: Upstream, src_env: dict[str, str] | None = None, backend: str = "asyncio"
) -> Target:
    h1, h2, bolt, admin = (free_port() for _ in range(4))
    cfg = {
        "app": "attacked-sidecar",
        "registry": f"file://{tmp}/registry?poll=0.2",
        "admin": f"127.0.0.1:{admin}",
        "services": {PAIR_SERVICE: {"timeout": PAIR_TIMEOUT}},
        "rules": PAIR_RULES,
        "outbound": [{"protocol": "http", "listen": f"127.0.0.1:{h1}"}],
        "inbound": [
            {"protocol": "h2", "listen": f"127.0.0.1:{h2}",
             "upstream": f"127.0.0.1:{up.h2}", "services": [H2_SERVICE]},
            {"protocol": "bolt", "listen": f"127.0.0.1:{bolt}",
             "upstream": f"127.0.0.1:{up.bolt}", "services": [f"{BOLT_IFACE}:{BOLT_VERSION}"]},
        ],
    }  # fmt: skip
    proc = start_sidecar(tmp, "attacked", cfg, backend, env=src_env, quiet=True)
    for port in (h1, h2, bolt, admin):
        wait_port(port)
    name = "sofamesh" if backend == "asyncio" else f"sofamesh ({backend})"
    return Target(name, proc, h1, h2, bolt, admin)


def start_envoy(tmp: Path, up: Upstream, up2: Upstream) -> Target:
    h1, h2, bolt, admin = (free_port() for _ in range(4))
    conf = ENVOY_CONF.format(
        admin=admin,
        h1=ENVOY_HCM.format(name="h1", port=h1, codec="HTTP1"),
        h2=ENVOY_HCM.format(name="h2", port=h2, codec="HTTP2"),
        bolt=bolt,
        up_h1=up.h1,
        up2_h1=up2.h1,
        up_bolt=up.bolt,
    )
    (tmp / "envoy-attack.yaml").write_text(conf)
    argv = [str(ENVOY), "-c", str(tmp / "envoy-attack.yaml"), "--concurrency", "1",
            "--disable-hot-restart", "--log-level", "error"]  # fmt: skip
    log = (tmp / "envoy-attack.log").open("ab")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
    try:
        for port in (h1, h2, bolt, admin):
            wait_port(port)
    except RuntimeError as e:
        proc.kill()
        raise RuntimeError(f"{e}: {(tmp / 'envoy-attack.log').read_text()[-2000:]}") from e
    return Target("envoy 1.40", proc, h1, h2, bolt, admin)


# -- the upstream process ----------------------------------------------------------------------


def upstream_main(registry_dir: str, ports: dict[str, int], services: list[str]) -> None:
    import anyio

    import sofamesh
    from sofamesh.codecs.http1 import HttpRequest, HttpResponse
    from sofamesh.endpoint import Endpoint
    from sofamesh.protocols.h2.http import H2HttpHandler
    from sofamesh.protocols.h2.server import H2Server
    from sofamesh.registry import FileRegistry

    count = [0]
    big = b"x" * BIG

    def answer(target: str) -> bytes:
        if target == "/count":
            return str(count[0]).encode()
        if target == "/probe":  # the well-behaved client's calls: not the attack's
            return b"ok"
        count[0] += 1
        return big if target.startswith("/big") else b"ok"

    async def h2_app(req: HttpRequest) -> HttpResponse:
        return HttpResponse(200, [(b"content-type", b"text/plain")], answer(req.target))

    async def h1_conn(stream: Any) -> None:
        buf = b""
        async with stream:
            try:
                while True:
                    while b"\r\n\r\n" not in buf:
                        buf += await stream.receive(65536)
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    body = answer(head.split(b" ", 2)[1].decode())
                    await stream.send(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"
                                      b"content-length: %d\r\n\r\n" % len(body))  # fmt: skip
                    view = memoryview(body)
                    for i in range(0, len(body), 1 << 18):
                        await stream.send(view[i : i + (1 << 18)])
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                pass

    class Echo:
        def echo(self, value: Any) -> Any:
            return value

    async def main() -> None:
        h1 = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=ports["h1"])
        h2 = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=ports["h2"])
        server = H2Server(H2HttpHandler(h2_app, max_body=1 << 20))
        cfg = {"app": "attack-provider", "registry": "memory://"}
        async with (
            FileRegistry(registry_dir) as reg,
            sofamesh.open_mesh(cfg, env={}) as mesh,
            mesh.serve_bolt(
                Echo(), BOLT_IFACE, version=BOLT_VERSION, listen=f"127.0.0.1:{ports['bolt']}"
            ),  # fmt: skip
            anyio.create_task_group() as tg,
        ):
            for service in services:
                await reg.publish(Endpoint(service, "127.0.0.1", ports["h1"]))
            tg.start_soon(h1.serve, h1_conn)
            await tg.start(server.serve, h2)
            print("up", flush=True)

    anyio.run(main)


if __name__ == "__main__" and sys.argv[1:2] == ["upstream"]:
    upstream_main(sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4]))
