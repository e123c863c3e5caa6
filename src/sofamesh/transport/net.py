"""Socket-level helpers shared by the transports: connecting, naming peers, error sets."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

from sofamesh.transport.errors import ConnectError
from sofamesh.transport.streams import connect_tcp

# What a stream raises when the peer vanished or the stream was closed under us
# (anyio maps backend errors to these; OSError covers the rest of the kernel's).
STREAM_ERRORS: tuple[type[Exception], ...] = (
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    OSError,
)


# How a pool opens a connection: `connect` below, or mutual TLS on top of it (`tls.ClientTls`).
Connect = Callable[[str, int, float], Awaitable[anyio.abc.ByteStream]]


def format_address(address: Any) -> str:
    """`host:port` for an IPv4 address, `[host]:port` for IPv6, str() otherwise."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address) if address else "?"


async def connect(host: str, port: int, connect_timeout: float) -> anyio.abc.SocketStream:
    """A TCP connection to `host:port`, or `ConnectError` (refused, unresolvable, timed out).

    The connect timeout is ours and separate from any deadline of the caller:
    only our own scope turns into `ConnectError`, a caller's cancellation
    propagates unchanged.
    """
    with anyio.move_on_after(connect_timeout) as scope:
        try:
            return await connect_tcp(host, port)
        except OSError as exc:
            raise ConnectError(f"cannot connect to {host}:{port}: {exc}") from exc
    assert scope.cancelled_caught
    raise ConnectError(f"connecting to {host}:{port} timed out after {connect_timeout:g}s")
