"""Virtual IPs, the service directory and protocol sniffing."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sofamesh.codecs.h2.matcher import PREFACE
from sofamesh.config.model import InterceptConfig
from sofamesh.endpoint import Endpoint
from sofamesh.intercept import vips
from sofamesh.intercept.names import ServiceDirectory
from sofamesh.intercept.sniff import Kind, classify, http1_host
from sofamesh.registry.memory import MemoryRegistry

pytestmark = pytest.mark.anyio

_names = st.lists(st.text("abcdefgh.-", min_size=1, max_size=12), max_size=40, unique=True)


@given(names=_names)
@settings(max_examples=100, deadline=None)
def test_virtual_ips_are_unique_in_range_and_independent_of_order(names: list[str]) -> None:
    net = ipaddress.ip_network("10.77.0.0/26")
    got = vips.assign(names, str(net))
    assert got == vips.assign(list(reversed(names)), str(net))
    assert len(set(got.values())) == len(got) == min(len(names), net.num_addresses - 2)
    for ip in got.values():
        addr = ipaddress.ip_address(ip)
        assert addr in net and addr not in (net.network_address, net.broadcast_address)


def test_a_virtual_ip_is_the_names_own() -> None:
    # Fixed by SHA-256 of the name: every sidecar, every Python, every run.
    assert vips.assign(["orders"], "240.240.0.0/16") == {"orders": "240.240.22.171"}
    assert vips.assign(["orders", "users", "x"], "240.240.0.0/16")["orders"] == "240.240.22.171"


def test_a_collision_moves_only_the_later_name() -> None:
    got = vips.assign([f"s{i}" for i in range(6)], "10.0.0.0/29")  # 6 slots for 6 names
    assert sorted(got.values()) == [f"10.0.0.{i}" for i in range(1, 7)]


def test_the_directory_maps_names_and_destinations() -> None:
    directory = ServiceDirectory(InterceptConfig(domain="svc.sofamesh"))
    directory.update({"Orders": {("10.1.0.5", 20000)}, "users": set()})
    vip = directory.vip_of["Orders"]
    assert directory.service_named("orders.svc.sofamesh") == "Orders"
    assert directory.service_named("ORDERS.SVC.SOFAMESH.") == "Orders"
    assert directory.service_named("orders") == "Orders"
    assert directory.service_named(vip) == "Orders"
    assert directory.service_named("10.1.0.5") is None  # an endpoint's host names no service
    assert directory.service_named("nope.svc.sofamesh") is None
    assert directory.service_named("orders.example.com") is None
    assert directory.service_at(vip, 8080) == "Orders"
    assert directory.service_at("10.1.0.5", 20000) == "Orders"
    assert directory.service_at("10.1.0.5", 20001) is None


def test_interface_and_version_services_are_named_by_their_interface() -> None:
    directory = ServiceDirectory(InterceptConfig())
    directory.update({"com.example.Echo:2.0": set(), "com.example.Echo:1.0": set(), "a:1": set()})
    assert directory.service_named("com.example.echo.mesh.local") == "com.example.Echo:1.0"
    assert directory.service_named("a.mesh.local") == "a:1"


async def test_the_directory_reads_the_registry() -> None:
    registry = MemoryRegistry()
    await registry.publish(Endpoint("orders", "10.1.0.5", 20000))
    directory = ServiceDirectory(InterceptConfig())
    await directory.refresh(registry)
    assert directory.service_at("10.1.0.5", 20000) == "orders"
    assert directory.service_named("orders.mesh.local") == "orders"


@pytest.mark.parametrize(
    "first, kind",
    [
        (b"GET / HTTP/1.1\r\n", Kind.HTTP1),
        (PREFACE, Kind.H2),
        (b"\x01\x01\x00\x01", Kind.BOLT),
        (b"\xda\xbb\xc2", Kind.DUBBO),
        (b"\x16\x03\x01\x02\x00", Kind.TLS),
        (b"\x00\xff garbage", Kind.TCP),
        (b"SSH-2.0-OpenSSH_9.2\r\n", Kind.TCP),
    ],
)
def test_sniffing(first: bytes, kind: Kind) -> None:
    assert classify(first) is kind


@pytest.mark.parametrize("partial", [b"", b"GE", b"PRI * HTTP", b"\x01", b"\xda"])
def test_sniffing_waits_for_enough_bytes(partial: bytes) -> None:
    assert classify(partial) is None


def test_the_host_of_a_request_head() -> None:
    head = b"GET / HTTP/1.1\r\nUser-Agent: x\r\nHOST: orders.mesh.local:8080\r\n\r\nhost: body"
    assert http1_host(head) == "orders.mesh.local"
    assert http1_host(b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n") == "[::1]"
    assert http1_host(b"GET / HTTP/1.1\r\n\r\nHost: late\r\n") is None
