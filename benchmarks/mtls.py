"""What mutual TLS costs on keep-alive HTTP/1.1 through two proxies, sofamesh and Envoy.

    .venv/bin/python benchmarks/mtls.py [--duration 10] [--connections 50] [--runs 3]
    .venv/bin/python benchmarks/mtls.py --quick   # one 1 s round per path: a smoke run

Upstream: nginx answering a small 200 on 127.0.0.1. Paths, each with wrk -t1
(wrk, both proxies and nginx share this machine's cores):

- sofamesh, plaintext: wrk -> consumer sidecar (outbound) -> provider sidecar
  (inbound) -> nginx; asyncio + uvloop; no `tls:`. `--backend both` (the default
  but with --quick) adds the same two pairs on trio.
- sofamesh, mTLS: the same with `tls: {mode: strict}` on both sidecars (ECDSA
  P-256 certificates from `sofamesh ca`), so the sidecar-to-sidecar hop is mTLS.
- envoy, plaintext / envoy, mTLS: two Envoy 1.40 (--concurrency 1 each), the
  second requiring a client certificate and checking its SPIFFE URI SAN.

wrk's connections are kept alive, and so are the proxies' upstream connections:
this is the steady state the 30 % bar is about. Handshakes per second are
measured apart, with `openssl s_time -new` against each mTLS listener (a full
handshake with a client certificate per connection). Rounds alternate the
paths; the median round per path is reported, as Markdown (docs/performance.md), with
the CPU time both proxies of a path spent per request (from /proc): on a machine
whose cores are shared, the ratio of CPU per request says more than req/s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from netutil import (
    ENVOY,
    ROOT,
    add_backend_arg,
    backends_of,
    free_port,
    require_tools,
    start_envoy,
    start_nginx,
    start_sidecar,
    stop_all,
    wait_port,
    wrk,
    wrk_args,
)
from netutil import cpu_seconds as cpu_of

DOMAIN = "bench.test"
SERVICE = "bench"
PIDS: dict[str, list[int]] = {}  # the proxies' processes of each pair, by its tag
TAGS = {
    "sofamesh, plaintext": "plain",
    "sofamesh, mTLS": "mtls",
    "sofamesh (trio), plaintext": "trio-plain",
    "sofamesh (trio), mTLS": "trio-mtls",
    "envoy, plaintext": "envoy-plain",
    "envoy, mTLS": "envoy-mtls",
}


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used (Linux /proc)."""
    return sum(cpu_of(pid) for pid in pids)


def measured(name: str, port: int, duration: int, connections: int) -> dict[str, float]:
    """wrk's figures, plus the CPU both proxies of the path spent per request (us)."""
    pids = PIDS[TAGS[name]]
    before = cpu_seconds(pids)
    result = wrk(port, SERVICE, duration, connections)
    spent = cpu_seconds(pids) - before
    result["cpu_us"] = spent / max(result["rps"] * duration, 1) * 1e6
    return result


def envoy_conf(port: int, admin: int, next_port: int, server_tls: str, client_tls: str) -> str:
    """One Envoy (as JSON, which Envoy reads as YAML): `server_tls`/`client_tls` name the
    identity directory for its listener and its cluster, or "" for plaintext."""
    listener: dict[str, object] = {
        "name": "in",
        "address": _address(port),
        "filter_chains": [{"filters": [_hcm()], **_tls("Downstream", server_tls)}],
    }
    cluster = {
        "name": "next",
        "type": "STATIC",
        "connect_timeout": "1s",
        **_tls("Upstream", client_tls),
        "load_assignment": {
            "cluster_name": "next",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(next_port)}}]}],
        },
    }
    conf = {
        "admin": {"address": _address(admin)},
        "static_resources": {"listeners": [listener], "clusters": [cluster]},
    }
    return json.dumps(conf, indent=1)


def _address(port: int) -> dict[str, object]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def _hcm() -> dict[str, object]:
    route = {"match": {"prefix": "/"}, "route": {"cluster": "next"}}
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network"
            ".http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "hcm",
            "codec_type": "HTTP1",
            "route_config": {
                "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [route]}]
            },
            "http_filters": [
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                    },
                }
            ],
        },
    }


def _tls(side: str, ident: str) -> dict[str, object]:
    """A `transport_socket` for mTLS with the identity in `ident` (SPIFFE URI SANs checked)."""
    if not ident:
        return {}
    context: dict[str, object] = {
        "@type": f"type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.{side}TlsContext",
        "common_tls_context": {
            "tls_certificates": [
                {
                    "certificate_chain": {"filename": f"{ident}/cert.pem"},
                    "private_key": {"filename": f"{ident}/key.pem"},
                }
            ],
            "validation_context": {
                "trusted_ca": {"filename": f"{ident}/bundle.pem"},
                "match_typed_subject_alt_names": [
                    {"san_type": "URI", "matcher": {"prefix": f"spiffe://{DOMAIN}/"}}
                ],
            },
        },
    }
    if side == "Downstream":
        context["require_client_certificate"] = True
    return {"transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": context}}


def sofamesh_ca(tmp: Path) -> dict[str, Path]:
    """A CA and the identities of both sidecars (and both Envoys), as `sofamesh ca` writes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cli = [sys.executable, "-m", "sofamesh.cli", "ca"]
    subprocess.run([*cli, "init", str(tmp / "ca"), "--trust-domain", DOMAIN], check=True,
                   env=env, stdout=subprocess.DEVNULL)  # fmt: skip
    ids = {}
    for app in ("consumer", "provider"):
        ids[app] = tmp / app
        subprocess.run([*cli, "issue", "--ca", str(tmp / "ca"), "--app", app, "--workspace",
                        "bench", "--out", str(ids[app])], check=True, env=env,
                       stdout=subprocess.DEVNULL)  # fmt: skip
    return ids


def sidecar(
    tmp: Path, name: str, config: dict[str, object], backend: str = "asyncio"
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return start_sidecar(tmp, name, config, backend, env=env)


def tls_config(ident: Path | None) -> dict[str, object]:
    if ident is None:
        return {}
    files = {"cert": "cert.pem", "key": "key.pem", "trust_bundle": "bundle.pem"}
    return {"tls": {"mode": "strict", **{k: str(ident / v) for k, v in files.items()}}}


def sidecar_pair(
    tmp: Path, tag: str, upstream: int, ids: dict[str, Path] | None, procs: list, backend: str
) -> tuple[int, int]:
    """Provider and consumer sidecars on a registry of their own, starting: (consumer's
    outbound, inbound), the ports to wait for."""
    registry = f"file://{tmp}/registry-{tag}?poll=0.05"
    inbound, outbound = free_port(), free_port()
    provider = {
        "app": "provider",
        "registry": registry,
        "inbound": [{"protocol": "http", "listen": f"127.0.0.1:{inbound}",
                     "upstream": f"127.0.0.1:{upstream}", "services": [SERVICE]}],
        **tls_config(ids["provider"] if ids else None),
    }  # fmt: skip
    consumer = {
        "app": "consumer",
        "registry": registry,
        "outbound": [{"protocol": "http", "listen": f"127.0.0.1:{outbound}"}],
        **tls_config(ids["consumer"] if ids else None),
    }
    procs.append(sidecar(tmp, f"provider-{tag}", provider, backend))
    procs.append(sidecar(tmp, f"consumer-{tag}", consumer, backend))
    PIDS[tag] = [procs[-2].pid, procs[-1].pid]
    return outbound, inbound


def envoy_pair(
    tmp: Path, tag: str, upstream: int, ids: dict[str, Path] | None, procs: list, base: int
) -> tuple[int, int]:
    """Two Envoys, the second in front of nginx, starting: (the first's port, the second's)."""
    first, second = free_port(), free_port()
    confs = {
        "b": envoy_conf(second, free_port(), upstream, str(ids["provider"]) if ids else "", ""),
        "a": envoy_conf(first, free_port(), second, "", str(ids["consumer"]) if ids else ""),
    }
    for i, (name, conf) in enumerate(confs.items()):
        procs.append(start_envoy(tmp, f"envoy-{tag}-{name}", conf, base + i))
        PIDS.setdefault(f"envoy-{tag}", []).append(procs[-1].pid)
    return first, second


def handshakes_per_second(port: int, ident: Path, seconds: int) -> float:
    """Full mTLS handshakes per second a listener completes for one client (`openssl s_time`)."""
    out = subprocess.run(
        ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", str(seconds),
         "-cert", str(ident / "cert.pem"), "-key", str(ident / "key.pem"),
         "-CAfile", str(ident / "bundle.pem")],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    m = re.search(r"(\d+) connections in ([\d.]+)s?;? ?([\d.]+) connections/user sec", out)
    if m:
        return float(m.group(3))
    m = re.search(r"([\d.]+) connections/user sec", out)
    return float(m.group(1)) if m else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    add_backend_arg(ap)
    args = wrk_args(ap)
    require_tools("wrk", "nginx", "openssl")
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        try:
            paths, tls_ports, ids = start(tmp, procs, backends_of(args))
            for port in paths.values() if not args.quick else ():  # pools, handshakes, imports
                wrk(port, SERVICE, 2, args.connections)
            results: dict[str, list[dict[str, float]]] = {p: [] for p in paths}
            for _ in range(args.runs):
                for name, port in paths.items():
                    results[name].append(measured(name, port, args.duration, args.connections))
            seconds = 1 if args.quick else max(2, args.duration // 2)
            hs = {
                name: handshakes_per_second(port, ids["consumer"], seconds)
                for name, port in tls_ports.items()
            }
            report(results, hs, args)
        finally:
            stop_all(procs)


def start(
    tmp: Path, procs: list[subprocess.Popen[bytes]], backends: list[str]
) -> tuple[dict[str, int], dict[str, int], dict[str, Path]]:
    upstream = free_port()
    procs.append(start_nginx(tmp, port=upstream))
    ids = sofamesh_ca(tmp)
    paths, tls_ports, ports = {}, {}, []
    for backend in backends:
        proxy = "sofamesh" if backend == "asyncio" else "sofamesh (trio)"
        prefix = "" if backend == "asyncio" else "trio-"
        paths[f"{proxy}, plaintext"], inner = sidecar_pair(
            tmp, f"{prefix}plain", upstream, None, procs, backend
        )
        ports.append(inner)
        paths[f"{proxy}, mTLS"], tls_ports[proxy] = sidecar_pair(
            tmp, f"{prefix}mtls", upstream, ids, procs, backend
        )
    if ENVOY.exists():
        paths["envoy, plaintext"], inner = envoy_pair(tmp, "plain", upstream, None, procs, 81)
        ports.append(inner)
        paths["envoy, mTLS"], tls_ports["envoy"] = envoy_pair(tmp, "mtls", upstream, ids, procs, 83)
    for port in [*ports, *tls_ports.values(), *paths.values()]:  # pairs started side by side
        wait_port(port)
    return paths, tls_ports, ids


def median_rps(runs: list[dict[str, float]]) -> float:
    return statistics.median(r["rps"] for r in runs)


def median_cpu(runs: list[dict[str, float]]) -> float:
    return statistics.median(r["cpu_us"] for r in runs)


def report(
    results: dict[str, list[dict[str, float]]], hs: dict[str, float], args: argparse.Namespace
) -> None:
    print(
        f"wrk -t1 -c{args.connections} -d{args.duration}s keep-alive, {args.runs} rounds, median"
        f" round per path; {os.cpu_count()} cores shared by wrk, both proxies and nginx\n"
    )
    print("| path | req/s | p50 ms | p99 ms | CPU of both proxies, us/req | non-2xx |")
    print("|---|---|---|---|---|---|")
    for name, runs in results.items():
        best = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
        print(
            f"| {name} | {best['rps']:,.0f} | {best['p50']:.2f} | {best['p99']:.2f} "
            f"| {statistics.median(r['cpu_us'] for r in runs):.0f} "
            f"| {sum(r['errors'] for r in runs):.0f} |"
        )
    print(
        "\n| proxies | mTLS / plaintext req/s | plaintext / mTLS CPU per request"
        " | mTLS handshakes/s (openssl s_time -new) |"
    )
    print("|---|---|---|---|")
    for proxy in ("sofamesh", "sofamesh (trio)", "envoy"):
        if f"{proxy}, mTLS" not in results:
            continue
        mtls, plain = results[f"{proxy}, mTLS"], results[f"{proxy}, plaintext"]
        ratio = median_rps(mtls) / median_rps(plain)
        cpu = median_cpu(plain) / median_cpu(mtls)
        print(f"| {proxy} | {ratio:.2f} | {cpu:.2f} | {hs.get(proxy, 0.0):,.0f} |")
    if "sofamesh, mTLS" not in results:
        return
    mtls, plain = results["sofamesh, mTLS"], results["sofamesh, plaintext"]
    ratio = median_rps(mtls) / median_rps(plain)
    cpu = median_cpu(plain) / median_cpu(mtls)  # the throughput ratio if the proxies had the CPU
    met = ratio >= 0.7
    print(
        f"\nsofamesh mTLS costs {1 - ratio:.0%} of plaintext throughput on keep-alive traffic"
        f" ({1 - cpu:.0%} by CPU per request, which a shared machine disturbs less;"
        f" bar: under 30 %): {'met' if met else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
