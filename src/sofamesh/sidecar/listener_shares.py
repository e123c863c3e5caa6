"""Each worker's own listening sockets on a listener's port (SO_REUSEPORT), made by the main one.

Why one socket per worker rather than one socket shared by all: on a shared socket
every idle worker's event loop is woken for a new connection and the first to run
takes the whole queue (the asyncio accept path takes a burst in one go), so
connections opened together, keep-alive ones above all, all land on one worker;
benchmarks/workers.py measured 100 % / 0 % that way. With SO_REUSEPORT the kernel
hashes each connection to one of the port's sockets, so the workers share the
connections evenly, and each accept wakes one worker only.

The main process binds and keeps every socket: ports `:0` resolve once, an upgrade
hands all of them on, and a restarted worker gets its predecessor's socket back, with
the connections queued on it while it was down (they wait for the restart rather than
being reset). Linux lets only processes of the same user join the port's group.

A listener inherited from a process that bound it without SO_REUSEPORT (an upgrade
from `workers: 1`) cannot take more sockets: its workers share it.
"""

from __future__ import annotations

import logging
import socket
from collections import defaultdict

import anyio
import anyio.abc
from anyio.streams.stapled import MultiListener

from sofamesh.config import Address
from sofamesh.sidecar.errors import SidecarError

log = logging.getLogger("sofamesh.sidecar.workers")

BACKLOG = 65535  # what the kernel allows at most (net.core.somaxconn caps it)


async def bind_reusable(name: str, address: Address) -> MultiListener[anyio.abc.SocketStream]:
    """`sidecar.binding.bind_listener`, with SO_REUSEPORT: each worker's socket joins the port."""
    try:
        return await anyio.create_tcp_listener(
            local_host=address.host, local_port=address.port, reuse_port=True
        )
    except OSError as e:
        cause = e.strerror or str(e)
        raise SidecarError(f"{name}: cannot listen on {address}: {cause}") from None


def spread(name: str, sockets: list[socket.socket], workers: int) -> list[list[socket.socket]]:
    """Each worker's share of a listener's sockets: at least one per bound address each,
    binding more on the same port where there are fewer sockets than workers."""
    by_address: dict[tuple[int, str], list[socket.socket]] = defaultdict(list)
    for sock in sockets:
        by_address[(sock.family, str(sock.getsockname()))].append(sock)
    shares: list[list[socket.socket]] = [[] for _ in range(workers)]
    for members in by_address.values():
        if len(members) < workers and not _reuses_port(members[0]):
            log.warning("%s: bound without SO_REUSEPORT; its workers share one socket", name)
            for share in shares:
                share.extend(members)
            continue
        members += [_bind_like(members[0]) for _ in range(workers - len(members))]
        for i, sock in enumerate(members):
            shares[i % workers].append(sock)
    return shares


def _reuses_port(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT))


def _bind_like(sock: socket.socket) -> socket.socket:
    """Another listening socket on `sock`'s address, in its SO_REUSEPORT group."""
    new = socket.socket(sock.family, socket.SOCK_STREAM)
    try:
        new.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        new.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if sock.family == socket.AF_INET6:
            v6only = sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
            new.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
        new.bind(sock.getsockname())
        new.listen(BACKLOG)
        new.setblocking(False)
    except BaseException:
        new.close()
        raise
    return new
