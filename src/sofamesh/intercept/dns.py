"""The sidecar's DNS proxy: mesh names answered with virtual IPs, every other query forwarded.

`<service>.<domain>` gets an authoritative A record with the service's virtual IP
(AAAA and other types: an empty answer, so a client falls back to IPv4 at once; a name
in the domain that is no service: NXDOMAIN). Any other query is forwarded as it came to
the upstream resolver (the config's, else the first nameserver of /etc/resolv.conf),
over UDP, and again over TCP when the UDP answer is truncated; the reply goes back as
the upstream sent it. The init rules (`--dns`) redirect the app's udp/53 here and
exempt the sidecar's own uid, so its forwarded queries go out directly.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from sofamesh.codecs.dns import (
    RCODE_FORMERR,
    RCODE_NXDOMAIN,
    RCODE_SERVFAIL,
    TYPE_A,
    DnsError,
    Query,
    build_answer,
    is_truncated,
    parse_query,
    reply_id,
)
from sofamesh.config.model import Address, DnsProxyConfig
from sofamesh.intercept.names import ServiceDirectory
from sofamesh.stats import Stats
from sofamesh.transport.errors import TransportError
from sofamesh.transport.net import connect
from sofamesh.transport.tls import LOST

log = logging.getLogger("sofamesh.intercept.dns")
MAX_UDP_QUERY = 4096  # EDNS(0) payloads rarely exceed this; a query is far smaller
RESOLV_CONF = "/etc/resolv.conf"
_TCP_LOST: tuple[type[Exception], ...] = (*LOST, anyio.IncompleteRead)


def system_resolver(path: str = RESOLV_CONF) -> Address:
    """The first IPv4 nameserver of `path` (the host's resolver), port 53."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                if ipaddress.ip_address(parts[1]).version == 4:
                    return Address(parts[1], 53)
            except ValueError:
                continue
    raise ValueError(f"{path} names no IPv4 nameserver")


class DnsProxy:
    def __init__(
        self,
        config: DnsProxyConfig,
        directory: ServiceDirectory,
        stats: Stats,
        upstream: Address | None = None,
    ) -> None:
        self.config = config
        self.directory = directory
        self.upstream = upstream or config.upstream or system_resolver()
        self._stats = stats
        self._pending = 0
        self.bound: Address | None = None

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[Address] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        listen = self.config.listen
        async with await anyio.create_udp_socket(
            local_host=listen.host, local_port=listen.port
        ) as sock:
            self.bound = Address(listen.host, sock.extra(anyio.abc.SocketAttribute.local_port))
            task_status.started(self.bound)
            async with anyio.create_task_group() as tg:
                async for data, (host, port) in sock:
                    reply = self.answer(data)
                    if reply is not None:
                        await _send(sock, reply, (host, port))
                    elif self._pending >= self.config.max_pending:
                        self._stats.incr("dns.overloaded")
                        await self._fail(sock, data, (host, port))
                    elif data:
                        tg.start_soon(self._forward, sock, data, (host, port))

    def answer(self, data: bytes) -> bytes | None:
        """The reply to a query this proxy answers itself, or None to forward it."""
        try:
            query = parse_query(data, MAX_UDP_QUERY)
        except DnsError as e:
            self._stats.incr("dns.malformed")
            log.debug("dns: malformed query: %s", e)
            return None  # the upstream judges what we cannot read; a garbled ID gets nothing
        if query.is_response or query.opcode != 0 or len(query.questions) != 1:
            return None
        name = query.questions[0].name.lower()
        domain = self.directory.domain
        if name != domain and not name.endswith("." + domain):
            return None
        return self._answer_mesh(query, name)

    def _answer_mesh(self, query: Query, name: str) -> bytes:
        service = self.directory.service_named(name)
        vip = self.directory.vip_of.get(service) if service else None
        try:
            if vip is None:
                self._stats.incr("dns.nxdomain")
                return build_answer(query, RCODE_NXDOMAIN)
            self._stats.incr("dns.answered")
            if query.questions[0].qtype != TYPE_A:
                return build_answer(query, ttl=self.config.ttl)  # NODATA
            return build_answer(
                query, addresses=(ipaddress.IPv4Address(vip).packed,), ttl=self.config.ttl
            )
        except DnsError:
            return build_answer(Query(query.id, query.flags, ()), RCODE_FORMERR)

    async def _forward(
        self, sock: anyio.abc.UDPSocket, data: bytes, client: tuple[str, int]
    ) -> None:
        self._pending += 1
        try:
            reply = None
            with anyio.move_on_after(self.config.timeout):
                reply = await self._ask_udp(data)
                if is_truncated(reply):
                    reply = await self._ask_tcp(data) or reply
            self._stats.incr("dns.forwarded")
            if reply is None:
                self._stats.incr("dns.upstream_timeouts")
                await self._fail(sock, data, client)
            else:
                await _send(sock, reply, client)
        finally:
            self._pending -= 1

    async def _ask_udp(self, data: bytes) -> bytes:
        up = self.upstream
        async with await anyio.create_connected_udp_socket(up.host, up.port) as conn:
            await conn.send(data)
            async for reply in conn:
                if reply_id(reply) == reply_id(data):  # a stray datagram is not the answer
                    return reply
        raise anyio.EndOfStream  # pragma: no cover - a connected UDP socket does not end

    async def _ask_tcp(self, data: bytes) -> bytes | None:
        """RFC 7766: the query with a 2-byte length prefix, the answer likewise."""
        try:
            stream = await connect(self.upstream.host, self.upstream.port, self.config.timeout)
        except TransportError as e:
            log.info("dns: truncated answer, and TCP to %s failed: %s", self.upstream, e)
            return None
        async with stream:
            try:
                await stream.send(len(data).to_bytes(2, "big") + data)
                reader = BufferedByteReceiveStream(stream)
                size = int.from_bytes(await reader.receive_exactly(2), "big")
                return await reader.receive_exactly(size)
            except _TCP_LOST:
                return None

    async def _fail(self, sock: anyio.abc.UDPSocket, data: bytes, client: tuple[str, int]) -> None:
        try:
            query = parse_query(data, MAX_UDP_QUERY)
        except DnsError:
            return  # nothing to answer to
        await _send(sock, build_answer(Query(query.id, query.flags, ()), RCODE_SERVFAIL), client)


async def _send(sock: anyio.abc.UDPSocket, reply: bytes, client: tuple[str, int]) -> None:
    try:
        await sock.sendto(reply, *client)
    except OSError as e:  # one client's trouble stops no one else's answers
        log.info("dns: cannot answer %s:%d: %s", client[0], client[1], e)
