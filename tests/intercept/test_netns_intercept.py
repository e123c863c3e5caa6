"""Transparent interception for real: two hosts as network namespaces, iptables from Debian.

Host A runs a client that knows nothing of the mesh and its sidecar; host B a provider
(port 8080) and its sidecar. `sofamesh-init` installs the rules in each namespace; the
sidecars run with group 1337 (`setpriv`), which the rules exempt, while the client and
the provider run as root. The client calls `http://orders.mesh.local:8080/`: its DNS
query is redirected to A's DNS proxy (a virtual IP back), its connection to A's
transparent listener, which calls B's sidecar over mutual TLS with A's fault rule
applied. A direct call to B's address passes through A untouched and is redirected on
B to its transparent inbound listener. `--remove` restores direct traffic.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tests.intercept.netns import Hosts
from tests.security.pki import DOMAIN, issue_files

from sofamesh.demo.procs import Procs
from sofamesh.security.ca import CertificateAuthority
from sofamesh.security.identity import IdentityFiles

pytestmark = pytest.mark.anyio

PROXY_GID = "1337"
APPS = str(Path(__file__).with_name("nsapps.py"))
UPSTREAM_ANSWER = "10.9.9.9"
GREETER = "helloworld.Greeter"
ECHO = "com.example.Echo:1.0"
ISTIO = {"istio": True}
CHAOS = {"faults": [{"service": "orders", "headers": {"x-chaos": "on"}, "abort": {"code": 418}}]}


def _tls(files: IdentityFiles, mode: str) -> dict[str, str]:
    return {"mode": mode, "cert": files.cert, "key": files.key, "trust_bundle": files.trust_bundle}


def _provider_sidecar(
    tmp: Path, hosts: Hosts, files: IdentityFiles, bolt_port: int, mode: str
) -> dict[str, Any]:
    return {
        "app": "orders",
        "registry": f"file://{tmp}/reg?poll=0.05",
        "admin": "127.0.0.1:0",
        "local_api": {"token_file": str(tmp / "orders.token")},
        "inbound": [
            {
                "protocol": "http",
                "listen": f"{hosts.b_ip}:20000",
                "upstream": "127.0.0.1:8080",
                "services": ["orders"],
            },
            {
                "protocol": "grpc",
                "listen": f"{hosts.b_ip}:20001",
                "upstream": "127.0.0.1:50051",
                "services": [GREETER],
            },
            {
                "protocol": "bolt",
                "listen": f"{hosts.b_ip}:20002",
                "upstream": f"127.0.0.1:{bolt_port}",
                "services": [ECHO],
            },
        ],
        "tls": _tls(files, mode),
        "intercept": {"outbound": None, "inbound": "0.0.0.0:15006"},
    }


def _client_sidecar(tmp: Path, files: IdentityFiles, unknown: str) -> dict[str, Any]:
    return {
        "app": "shop",
        "registry": f"file://{tmp}/reg?poll=0.05",
        "admin": "127.0.0.1:0",
        "local_api": {"token_file": str(tmp / "shop.token")},
        "tls": _tls(files, "permissive"),
        "rules": CHAOS,
        "intercept": {
            "outbound": "127.0.0.1:15001",
            "domain": "mesh.local",
            "refresh": 0.2,
            "unknown": unknown,
            "dns": {"listen": "127.0.0.1:15053"},
        },
    }


async def _in(ns: str, *argv: str) -> str:
    done = await anyio.run_process(["ip", "netns", "exec", ns, *argv], check=False)
    out = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, f"{argv} in {ns}: {out}"
    return done.stdout.decode()


async def _app(ns: str, *args: str) -> Any:
    return json.loads(await _in(ns, sys.executable, APPS, *args))


async def _init(ns: str, *args: str, gid: str = PROXY_GID) -> str:
    return await _in(ns, sys.executable, "-m", "sofamesh.intercept", "--proxy-gid", gid, *args)


async def _sidecar(procs: Procs, ns: str, name: str, config: dict[str, Any], backend: str) -> Any:
    path = procs.workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    sidecar = [sys.executable, "-m", "sofamesh.sidecar", "-c", str(path), "--backend", backend]
    setpriv = ["setpriv", f"--regid={PROXY_GID}", "--clear-groups"]
    return await procs.start(name, ["ip", "netns", "exec", ns, *setpriv, *sidecar])


async def _counters(ns: str, admin: str) -> dict[str, int]:
    got = await _app(ns, "get", f"http://{admin}/stats")
    counters: dict[str, int] = json.loads(got["body"])["counters"]
    return counters


async def _tcp_metrics(ns: str, admin: str, reporter: str, flags: str = "-") -> dict[str, Any]:
    """Istio's TCP series of one relayed connection, once it has closed (polled, deadline)."""
    with anyio.fail_after(15):
        while True:
            got = await _app(ns, "get", f"http://{admin}/stats/prometheus")
            found = {
                s.name: (dict(s.labels), s.value)
                for family in text_string_to_metric_families(got["body"])
                for s in family.samples
                if s.name.startswith("istio_tcp_")
                and (s.labels["reporter"], s.labels["response_flags"]) == (reporter, flags)
            }
            if found.get("istio_tcp_connections_closed_total", ({}, 0))[1] == 1:
                return found
            await anyio.sleep(0.1)


async def _resolved(ns: str, name: str) -> list[str]:
    with anyio.fail_after(15):
        while True:  # the sidecar reads the registry every 0.2 s: poll, with a deadline
            got = await _app(ns, "resolve", name)
            if isinstance(got, list):
                return got
            await anyio.sleep(0.1)


async def _start_mesh(
    procs: Procs,
    hosts: Hosts,
    tmp: Path,
    backend: str,
    unknown: str = "pass",
    exempt_gid: str = PROXY_GID,
    provider_tls: str = "strict",
) -> tuple[Any, Any]:
    ca = CertificateAuthority.create(DOMAIN)
    ids = {app: issue_files(ca, tmp / app, app) for app in ("orders", "shop")}
    await procs.start(
        "dns-upstream",
        [*hosts.exec(hosts.b), sys.executable, APPS, "dns-upstream", hosts.b_ip, UPSTREAM_ANSWER],
    )
    await procs.start("provider", [*hosts.exec(hosts.b), sys.executable, APPS, "provider", "8080"])
    await procs.start(
        "grpc-provider", [*hosts.exec(hosts.b), sys.executable, APPS, "grpc-provider", "50051"]
    )
    bolt = await procs.start(
        "bolt-provider", [*hosts.exec(hosts.b), sys.executable, APPS, "bolt-provider", ECHO]
    )
    await _init(hosts.b, "--inbound-ports", "8080", "--inbound-port", "15006")
    config = _provider_sidecar(tmp, hosts, ids["orders"], bolt["port"], provider_tls)
    b = await _sidecar(procs, hosts.b, "sidecar-b", {**config, "metrics": ISTIO}, backend)
    await _init(hosts.a, "--dns", "--dns-port", "15053", gid=exempt_gid)
    config = {**_client_sidecar(tmp, ids["shop"], unknown), "metrics": ISTIO}
    a = await _sidecar(procs, hosts.a, "sidecar-a", config, backend)
    return a, b


async def test_a_client_that_knows_no_mesh_calls_a_service_by_name(
    hosts: Hosts, tmp_path: Path, anyio_backend: str
) -> None:
    async with Procs(tmp_path, anyio_backend) as procs:
        a, b = await _start_mesh(procs, hosts, tmp_path, anyio_backend)
        # DNS: the mesh name is a virtual IP from the configured range.
        (vip,) = await _resolved(hosts.a, "orders.mesh.local")
        assert ipaddress.ip_address(vip) in ipaddress.ip_network("240.240.0.0/16")
        # Through both sidecars, mTLS between them: B's app hears the verified caller.
        got = await _app(hosts.a, "get", "http://orders.mesh.local:8080/hello")
        assert got["status"] == 200, got
        seen = json.loads(got["body"])
        assert seen["path"] == "/hello" and seen["caller"] == "shop", seen
        # A's governance applies to the intercepted call: the fault answers 418.
        got = await _app(hosts.a, "get", "http://orders.mesh.local:8080/hello", "x-chaos:on")
        assert got["status"] == 418, got
        # gRPC by name likewise: the sniffed HTTP/2 preface goes to the gRPC outbound server.
        got = await _app(hosts.a, "grpc-call", "helloworld.greeter.mesh.local:50051")
        assert got == {"code": "OK", "body": "hello mesh from shop"}, got
        # Bolt by its interface's name: the frame is sniffed and goes to the Bolt outbound server.
        (echo_vip,) = await _resolved(hosts.a, "com.example.echo.mesh.local")
        got = await _app(hosts.a, "bolt-call", echo_vip, "12200", ECHO)
        assert got == {"status": "SUCCESS", "value": ["shop", "whoami"]}, got
        # Any other name goes to the host's resolver (a DNS server on B).
        assert await _app(hosts.a, "resolve", "example.test") == [UPSTREAM_ANSWER]
        counters = await _counters(hosts.a, a["admin"])
        # Four client connections, four intercepted: the sidecar's own upstream
        # connections (to B, and its DNS queries) were not redirected back to it.
        assert counters["intercept.outbound.mesh"] == 4, counters
        b_counters = await _counters(hosts.b, b["admin"])
        # B's inbound listener is strict: the calls came over mTLS, and not by interception.
        assert b_counters["tls.handshakes"] >= 1, b_counters
        assert "tls.plaintext_refused" not in b_counters, b_counters
        assert "intercept.inbound.relayed" not in b_counters, b_counters


async def test_unknown_destinations_pass_and_removal_restores_direct_traffic(
    hosts: Hosts, tmp_path: Path, anyio_backend: str
) -> None:
    async with Procs(tmp_path, anyio_backend) as procs:
        # B permissive: a plaintext caller from outside the mesh still reaches its app.
        a, b = await _start_mesh(procs, hosts, tmp_path, anyio_backend, provider_tls="permissive")
        direct = f"http://{hosts.b_ip}:8080/direct"
        got = await _app(hosts.a, "get", direct)
        assert got["status"] == 200 and json.loads(got["body"])["caller"] is None, got
        assert (await _counters(hosts.a, a["admin"]))["intercept.outbound.passthrough"] == 1
        # On B the call to the app's port went through B's transparent inbound listener.
        assert (await _counters(hosts.b, b["admin"]))["intercept.inbound.relayed"] == 1
        await _check_tcp_metrics(hosts, a["admin"], b["admin"])
        # A destination nothing listens on: A's pass-through counts it as Envoy's UF.
        assert (await _app(hosts.a, "get", f"http://{hosts.b_ip}:9/"))["status"] == 0
        failed = await _tcp_metrics(hosts.a, a["admin"], "source", "UF")
        assert failed["istio_tcp_connections_opened_total"][1] == 1, failed
        assert failed["istio_tcp_received_bytes_total"][1] == 0, failed
        assert failed["istio_tcp_sent_bytes_total"][0]["destination_service"] == f"{hosts.b_ip}:9"
        await _init(hosts.a, "--remove")
        rules = await _in(hosts.a, "iptables", "-t", "nat", "-S")
        assert "SOFAMESH" not in rules, rules
        got = await _app(hosts.a, "get", direct)
        assert got["status"] == 200, got
        assert (await _counters(hosts.a, a["admin"]))["intercept.outbound.passthrough"] == 2
        # No DNS redirect any more: B's resolver does not know the mesh name.
        assert await _app(hosts.a, "resolve", "orders.mesh.local") == [UPSTREAM_ANSWER]


async def _check_tcp_metrics(hosts: Hosts, a_admin: str, b_admin: str) -> None:
    """Both relays of the connection count it in Istio's TCP family, each as its reporter."""
    source = await _tcp_metrics(hosts.a, a_admin, "source")
    dest = await _tcp_metrics(hosts.b, b_admin, "destination")
    for found in (source, dest):
        assert found["istio_tcp_connections_opened_total"][1] == 1, found
        labels = found["istio_tcp_connections_opened_total"][0]
        assert labels["destination_service"] == f"{hosts.b_ip}:8080", labels
        assert labels["request_protocol"] == "tcp" and labels["response_flags"] == "-", labels
        assert labels["connection_security_policy"] == "none", labels
    # The same bytes pass both relays: each side counts every one of them, each way.
    for name in ("istio_tcp_received_bytes_total", "istio_tcp_sent_bytes_total"):
        assert source[name][1] == dest[name][1] > 0, (source[name], dest[name])
    src_labels, dst_labels = (
        source["istio_tcp_sent_bytes_total"][0],
        dest["istio_tcp_sent_bytes_total"][0],
    )
    assert src_labels["source_workload"] == "shop", src_labels
    assert src_labels["destination_service_name"] == "PassthroughCluster", src_labels
    assert dst_labels["destination_workload"] == "orders", dst_labels
    assert dst_labels["destination_service_name"] == "InboundPassthroughClusterIpv4", dst_labels


async def test_unknown_destinations_can_be_blocked(
    hosts: Hosts, tmp_path: Path, anyio_backend: str
) -> None:
    async with Procs(tmp_path, anyio_backend) as procs:
        a, _b = await _start_mesh(procs, hosts, tmp_path, anyio_backend, unknown="block")
        got = await _app(hosts.a, "get", f"http://{hosts.b_ip}:8080/direct")
        assert got["status"] == 0, got  # closed: the app sees a failed connection
        got = await _app(hosts.a, "get", "http://orders.mesh.local:8080/hello")
        assert got["status"] == 200, got  # mesh calls are not blocked
        counters = await _counters(hosts.a, a["admin"])
        assert counters["intercept.outbound.refused"] == 1, counters
        assert "intercept.outbound.passthrough" not in counters, counters
        log = (tmp_path / "sidecar-a.log").read_text()
        assert f"to {hosts.b_ip}:8080: an unknown destination" in log


async def test_without_the_owner_exemption_the_sidecars_own_calls_come_back_to_it(
    hosts: Hosts, tmp_path: Path, anyio_backend: str
) -> None:
    # The rules exempt group 4242, not the sidecar's 1337: its upstream connection to B is
    # redirected into its own transparent listener, which refuses a TLS connection to a
    # mesh service. The exemption the other tests rely on is what prevents this.
    async with Procs(tmp_path, anyio_backend) as procs:
        a, _b = await _start_mesh(procs, hosts, tmp_path, anyio_backend, exempt_gid="4242")
        got = await _app(hosts.a, "get", "http://orders.mesh.local:8080/hello")
        assert got["status"] >= 500, got
        counters = await _counters(hosts.a, a["admin"])
        assert counters["intercept.outbound.mesh"] == 1, counters  # the client's own
        assert counters["intercept.outbound.refused"] >= 1, counters  # the sidecar's, looped
        assert "tls to service orders" in (tmp_path / "sidecar-a.log").read_text()
