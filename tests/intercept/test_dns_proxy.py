"""The DNS proxy on 127.0.0.1: mesh names answered, others forwarded (UDP; TCP if truncated)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.abc
import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from sofamesh.config.model import Address, DnsProxyConfig, InterceptConfig
from sofamesh.intercept.dns import DnsProxy, system_resolver
from sofamesh.intercept.names import ServiceDirectory
from sofamesh.stats import Stats

pytestmark = pytest.mark.anyio


def _reply(wire: bytes, address: str, truncated: bool) -> bytes:
    query = dns.message.from_wire(wire)
    reply = dns.message.make_response(query)
    if truncated:
        reply.flags |= dns.flags.TC
    else:
        reply.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A", address))
    return reply.to_wire()


async def _serve_udp(sock: anyio.abc.UDPSocket, truncate: bool) -> None:
    async with sock:
        async for wire, (host, port) in sock:
            await sock.sendto(_reply(wire, "10.9.9.9", truncate), host, port)


async def _serve_listener(listener: anyio.abc.SocketListener) -> None:
    async with listener:
        await listener.serve(_serve_tcp)


async def _serve_tcp(stream: anyio.abc.SocketStream) -> None:
    async with stream:
        data = await stream.receive()
        answer = _reply(data[2:], "10.9.9.10", False)
        await stream.send(len(answer).to_bytes(2, "big") + answer)


async def _upstream(tg: anyio.abc.TaskGroup, truncate: bool) -> Address:
    """A resolver on 127.0.0.1: UDP answers 10.9.9.9 (or truncated), TCP 10.9.9.10."""
    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    tg.start_soon(_serve_listener, tcp)
    port = tcp.extra(anyio.abc.SocketAttribute.local_port)
    udp = await anyio.create_udp_socket(local_host="127.0.0.1", local_port=port)
    tg.start_soon(_serve_udp, udp, truncate)
    return Address("127.0.0.1", port)


@pytest.fixture
async def stats() -> AsyncIterator[Stats]:
    yield Stats()


async def _ask(proxy: Address, name: str, rdtype: str = "A") -> dns.message.Message:
    async with await anyio.create_connected_udp_socket(proxy.host, proxy.port) as sock:
        query = dns.message.make_query(name, rdtype)
        await sock.send(query.to_wire())
        with anyio.fail_after(5):
            return dns.message.from_wire(await sock.receive())


async def _proxy(tg: anyio.abc.TaskGroup, upstream: Address, stats: Stats) -> Address:
    directory = ServiceDirectory(InterceptConfig(domain="svc.sofamesh"))
    directory.update({"orders": set()})
    config = DnsProxyConfig(listen=Address("127.0.0.1", 0), ttl=7)
    proxy = DnsProxy(config, directory, stats, upstream)
    bound: Address = await tg.start(proxy.serve)
    return bound


async def test_mesh_names_are_answered_with_virtual_ips(stats: Stats) -> None:
    async with anyio.create_task_group() as tg:
        proxy = await _proxy(tg, Address("127.0.0.1", 9), stats)
        reply = await _ask(proxy, "orders.svc.sofamesh")
        (rrset,) = reply.answer
        assert [r.address for r in rrset] == ["240.240.22.171"] and rrset.ttl == 7
        assert reply.flags & dns.flags.AA
        empty = await _ask(proxy, "orders.svc.sofamesh", "AAAA")
        assert empty.rcode() == dns.rcode.NOERROR and not empty.answer
        missing = await _ask(proxy, "nobody.svc.sofamesh")
        assert missing.rcode() == dns.rcode.NXDOMAIN
        assert stats.counters["dns.answered"] == 2 and stats.counters["dns.nxdomain"] == 1
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("truncate, expected", [(False, "10.9.9.9"), (True, "10.9.9.10")])
async def test_other_names_are_forwarded(stats: Stats, truncate: bool, expected: str) -> None:
    async with anyio.create_task_group() as tg:
        upstream = await _upstream(tg, truncate)
        proxy = await _proxy(tg, upstream, stats)
        reply = await _ask(proxy, "example.com")
        assert [r.address for r in reply.answer[0]] == [expected]
        assert stats.counters["dns.forwarded"] == 1
        tg.cancel_scope.cancel()


async def test_a_silent_upstream_gets_the_client_a_servfail(stats: Stats) -> None:
    async with anyio.create_task_group() as tg:
        silent = await anyio.create_udp_socket(local_host="127.0.0.1", local_port=0)
        port = silent.extra(anyio.abc.SocketAttribute.local_port)
        directory = ServiceDirectory(InterceptConfig())
        config = DnsProxyConfig(listen=Address("127.0.0.1", 0), timeout=0.2)
        bound = await tg.start(DnsProxy(config, directory, stats, Address("127.0.0.1", port)).serve)
        reply = await _ask(bound, "example.com")
        assert reply.rcode() == dns.rcode.SERVFAIL
        assert stats.counters["dns.upstream_timeouts"] == 1
        await silent.aclose()
        tg.cancel_scope.cancel()


async def test_garbage_is_counted_and_the_proxy_keeps_serving(stats: Stats) -> None:
    async with anyio.create_task_group() as tg:
        proxy = await _proxy(tg, Address("127.0.0.1", 9), stats)
        async with await anyio.create_connected_udp_socket(proxy.host, proxy.port) as sock:
            await sock.send(b"\x01\x02\x03")
        reply = await _ask(proxy, "orders.svc.sofamesh")
        assert reply.answer
        assert stats.counters["dns.malformed"] == 1
        tg.cancel_scope.cancel()


def test_the_system_resolver_is_the_first_ipv4_nameserver(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# x\nsearch a.b\nnameserver ::1\nnameserver 10.0.0.53\nnameserver 10.0.0.54\n")
    assert system_resolver(str(conf)) == Address("10.0.0.53", 53)
    conf.write_text("nameserver ::1\n")
    with pytest.raises(ValueError, match="no IPv4 nameserver"):
        system_resolver(str(conf))
