"""Where the sidecar's listeners come from: a TCP socket bound on each configured address.

An IP literal is bound here, as `anyio.create_tcp_listener` binds it, without its
name resolution: on uvloop that starts libuv's four resolver threads, which an idle
sidecar would keep for nothing. A hostname (or a scoped IPv6 address) still goes
through anyio.
"""

from __future__ import annotations

import ipaddress
import socket

import anyio
import anyio.abc
from anyio.streams.stapled import MultiListener

from sofamesh.config import Address
from sofamesh.sidecar.errors import SidecarError
from sofamesh.transport.handover import listener_from_sockets

LISTEN_BACKLOG = 65536  # anyio's `create_tcp_listener` default (the kernel caps it at somaxconn)


async def bind_listener(name: str, address: Address) -> MultiListener[anyio.abc.SocketStream]:
    """A TCP listener on `address`; a `SidecarError` naming the listener when it cannot be had."""
    try:
        if _ip_literal(address.host):
            return await listener_from_sockets([_bound_socket(address)])
        return await anyio.create_tcp_listener(local_host=address.host, local_port=address.port)
    except OSError as e:
        cause = e.strerror or str(e)
        raise SidecarError(f"{name}: cannot listen on {address}: {cause}") from None


def _ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return "%" not in host  # a scoped IPv6 address: anyio's path knows its scope id


def _bound_socket(address: Address) -> socket.socket:
    """A listening socket on an IP literal, set up as `anyio.create_tcp_listener` sets it up."""
    v6 = ":" in address.host
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET)
    try:
        sock.setblocking(False)
        if v6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address.host, address.port))
        sock.listen(LISTEN_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock
