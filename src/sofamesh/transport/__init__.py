"""Transports: sockets and connection management under the codecs, on anyio only.

Everything here runs on asyncio (uvloop included) and trio alike, and every
task belongs to an `async with` owner: a server's `serve`, a pool's context.
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
