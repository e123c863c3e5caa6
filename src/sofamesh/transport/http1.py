"""HTTP/1.1 transports: `Http1Server` (inbound) and `Http1Pool` (outbound).

The implementations live in `http1_server`, `http1_pool` and `http1_conn`;
import from here.
"""

from sofamesh.transport.http1_conn import Http1Connection
from sofamesh.transport.http1_pool import Http1Pool, Http1PoolConfig, PoolStatistics
from sofamesh.transport.http1_server import (
    ConnInfo,
    Http1Handler,
    Http1Server,
    Http1ServerConfig,
    ServerStatistics,
)

__all__ = [
    "ConnInfo",
    "Http1Connection",
    "Http1Handler",
    "Http1Pool",
    "Http1PoolConfig",
    "Http1Server",
    "Http1ServerConfig",
    "PoolStatistics",
    "ServerStatistics",
]
