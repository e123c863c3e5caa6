"""What tracing and access logs cost on keep-alive HTTP/1.1 through two proxies, sofamesh and Envoy.

    .venv/bin/python benchmarks/observability.py [--duration 10] [--connections 50] [--runs 3]
    .venv/bin/python benchmarks/observability.py --quick   # one 1 s round per path: a smoke run

Upstream: nginx answering a small 200 on 127.0.0.1; a second nginx server answers
200 to every POST, standing in for the trace collector. Each path is a pair of
proxies (consumer -> provider -> nginx), both configured alike:

- off: no tracing, no access log (the default);
- tracing 1 % / tracing 100 %: W3C propagation, spans sampled at that ratio and
  exported (sofamesh: OTLP/HTTP protobuf; Envoy: its Zipkin tracer, JSON over HTTP,
  the collector it can reach without gRPC), `random_sampling` for Envoy;
- access log: each proxy writes the default format to a file (Envoy: its file
  access log with its default format).

The sidecars run on asyncio + uvloop, and (`--backend both`, the default but with
--quick) every sofamesh pair again on trio. Rounds alternate the paths; the median round per path is reported, as Markdown
(docs/performance.md), with the CPU time both proxies of a path spent per request.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from mtls import PIDS, SERVICE, cpu_seconds, envoy_conf, sidecar
from netutil import (
    ENVOY,
    add_backend_arg,
    backends_of,
    free_port,
    require_tools,
    start_envoy,
    start_nginx,
    stop_all,
    wait_port,
    wrk,
    wrk_args,
)

# The trace collector's stand-in, a second server of the upstream's nginx.
COLLECTOR = """
  server {{
    listen 127.0.0.1:{collector};
    keepalive_requests 1000000;
    client_max_body_size 64m;
    location / {{ return 200 ""; }}
  }}"""
# path -> (tracing sample %, access log)
PATHS = {"off": (None, False), "tracing 1 %": (1.0, False), "tracing 100 %": (100.0, False),
         "access log": (None, True)}  # fmt: skip
PROXY = {"asyncio": "sofamesh", "trio": "sofamesh (trio)"}  # the paths' names, by backend


def measured(name: str, port: int, duration: int, connections: int) -> dict[str, float]:
    """wrk's figures, plus the CPU both proxies of the path spent per request (us)."""
    before = cpu_seconds(PIDS[name])
    result = wrk(port, SERVICE, duration, connections)
    spent = cpu_seconds(PIDS[name]) - before
    result["cpu_us"] = spent / max(result["rps"] * duration, 1) * 1e6
    return result


def sofamesh_extra(percent: float | None, collector: int) -> dict[str, Any]:
    """The config keys a path adds to both sidecars."""
    out: dict[str, Any] = {}
    if percent is not None:
        out["tracing"] = {
            "enabled": True, "sample_ratio": percent / 100,
            "otlp_endpoint": f"http://127.0.0.1:{collector}/v1/traces",
        }  # fmt: skip
    return out


def sofamesh_pair(
    tmp: Path, tag: str, upstream: int, collector: int, procs: list[Any], backend: str
) -> tuple[int, int]:
    """Provider and consumer sidecars, starting: (consumer's outbound, provider's inbound)."""
    percent, logged = PATHS[tag]
    registry = f"file://{tmp}/registry-{len(PIDS)}?poll=0.05"
    inbound, outbound = free_port(), free_port()
    extra = sofamesh_extra(percent, collector)

    def listener(port: int, name: str, **more: Any) -> dict[str, Any]:
        access = {"access_log": {"path": str(tmp / f"{name}-{len(PIDS)}.log")}} if logged else {}
        return {"protocol": "http", "listen": f"127.0.0.1:{port}", **access, **more}

    provider = {"app": "provider", "registry": registry, **extra,
                "inbound": [listener(inbound, "provider", upstream=f"127.0.0.1:{upstream}",
                                     services=[SERVICE])]}  # fmt: skip
    consumer = {"app": "consumer", "registry": registry, **extra,
                "outbound": [listener(outbound, "consumer")]}  # fmt: skip
    procs.append(sidecar(tmp, f"provider-{len(PIDS)}", provider, backend))
    procs.append(sidecar(tmp, f"consumer-{len(PIDS)}", consumer, backend))
    PIDS[f"{PROXY[backend]}, {tag}"] = [procs[-2].pid, procs[-1].pid]
    return outbound, inbound


def envoy_observed(conf: str, percent: float | None, log: Path | None, collector: int) -> str:
    """An Envoy config from `mtls.envoy_conf`, with Zipkin tracing and/or a file access log."""
    doc = json.loads(conf)
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    if log is not None:
        hcm["access_log"] = [{"name": "envoy.access_loggers.file", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": str(log)}}]  # fmt: skip
    if percent is not None:
        hcm["tracing"] = {"random_sampling": {"value": percent}, "provider": {
            "name": "envoy.tracers.zipkin", "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig",
                "collector_cluster": "collector", "collector_endpoint": "/api/v2/spans",
                "collector_endpoint_version": "HTTP_JSON", "trace_id_128bit": True}}}  # fmt: skip
        doc["static_resources"]["clusters"].append({
            "name": "collector", "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": "collector", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": collector}}}}]}]}})  # fmt: skip
    return json.dumps(doc, indent=1)


def envoy_pair(
    tmp: Path, tag: str, upstream: int, collector: int, procs: list[Any]
) -> tuple[int, int]:
    """Two Envoys, the second in front of nginx, starting: (the first's port, the second's)."""
    percent, logged = PATHS[tag]
    first, second = free_port(), free_port()
    base = 100 + 2 * len(PIDS)
    confs = {"b": envoy_conf(second, free_port(), upstream, "", ""),
             "a": envoy_conf(first, free_port(), second, "", "")}  # fmt: skip
    for i, (name, conf) in enumerate(confs.items()):
        log = tmp / f"envoy-{base}-{name}.log" if logged else None
        observed = envoy_observed(conf, percent, log, collector)
        procs.append(start_envoy(tmp, f"envoy-{base}-{name}", observed, base + i))
        PIDS.setdefault(f"envoy, {tag}", []).append(procs[-1].pid)
    return first, second


def start(tmp: Path, procs: list[Any], backends: list[str]) -> dict[str, int]:
    upstream, collector = free_port(), free_port()
    servers = COLLECTOR.format(collector=collector)
    procs.append(start_nginx(tmp, servers, port=upstream, collector=collector))
    pairs = {
        f"{PROXY[backend]}, {tag}": sofamesh_pair(tmp, tag, upstream, collector, procs, backend)
        for backend in backends
        for tag in PATHS
    }
    if ENVOY.exists():
        pairs |= {
            f"envoy, {tag}": envoy_pair(tmp, tag, upstream, collector, procs) for tag in PATHS
        }
    for ports in pairs.values():  # every pair started side by side
        for port in reversed(ports):
            wait_port(port)
    return {name: first for name, (first, _) in pairs.items()}


def report(results: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    print(
        f"wrk -t1 -c{args.connections} -d{args.duration}s keep-alive, {args.runs} rounds, median"
        f" round per path; {os.cpu_count()} cores shared by wrk, both proxies and nginx;"
        f" load average {os.getloadavg()[0]:.2f} at the end\n"
    )
    print("| path | req/s | vs off | p50 ms | p99 ms | CPU of both proxies, us/req | non-2xx |")
    print("|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        best = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
        off = statistics.median(r["rps"] for r in results[name.split(",")[0] + ", off"])
        print(
            f"| {name} | {best['rps']:,.0f} | {best['rps'] / off:.2f} | {best['p50']:.2f} "
            f"| {best['p99']:.2f} | {statistics.median(r['cpu_us'] for r in runs):.0f} "
            f"| {sum(r['errors'] for r in runs):.0f} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    add_backend_arg(ap)
    args = wrk_args(ap)
    require_tools("wrk", "nginx")
    procs: list[Any] = []
    with tempfile.TemporaryDirectory() as d:
        try:
            paths = start(Path(d), procs, backends_of(args))
            if not args.quick:
                for port in paths.values():  # warm-up: pools, imports
                    wrk(port, SERVICE, 2, args.connections)
            results: dict[str, list[dict[str, float]]] = {p: [] for p in paths}
            for _ in range(args.runs):
                for name, port in paths.items():
                    results[name].append(measured(name, port, args.duration, args.connections))
            report(results, args)
        finally:
            stop_all(procs)


if __name__ == "__main__":
    main()
