"""Transports: sockets and connection management under the codecs.

Everything here runs on asyncio (uvloop included) and trio alike, and every
task belongs to an `async with` owner: a server's `serve`, a pool's context.
I/O goes through anyio, except `streams.py`, which gives asyncio a leaner TCP
stream of its own (see its docstring and docs/architecture.md for why).
"""

from sofamesh.transport.errors import (
    ConnectError,
    PoolClosedError,
    TransportError,
    UpstreamProtocolError,
    UpstreamResetError,
)
from sofamesh.transport.http1 import (
    ConnInfo,
    Http1Connection,
    Http1Handler,
    Http1Pool,
    Http1PoolConfig,
    Http1Server,
    Http1ServerConfig,
    PoolStatistics,
    ServerStatistics,
)

__all__ = [
    "ConnInfo",
    "ConnectError",
    "Http1Connection",
    "Http1Handler",
    "Http1Pool",
    "Http1PoolConfig",
    "Http1Server",
    "Http1ServerConfig",
    "PoolClosedError",
    "PoolStatistics",
    "ServerStatistics",
    "TransportError",
    "UpstreamProtocolError",
    "UpstreamResetError",
]
