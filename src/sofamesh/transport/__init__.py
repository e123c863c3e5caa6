"""Transport foundations every protocol shares: TCP streams, the accept loop, connect, errors.

Everything here runs on asyncio (uvloop included) and trio alike, and every
task belongs to an `async with` owner: a server's `serve`, a pool's context.
I/O goes through anyio, except `streams.py` and `loop_stream.py`, which give
asyncio a leaner TCP stream of its own (see their docstrings and
docs/architecture.md for why).
Each protocol's own clients and servers live in its slice, `sofamesh.protocols.<name>`.
"""

from sofamesh.transport.errors import (
    ConnectError,
    PoolClosedError,
    TransportError,
    UpstreamProtocolError,
    UpstreamResetError,
    failure_of,
)

__all__ = [
    "ConnectError",
    "PoolClosedError",
    "TransportError",
    "UpstreamProtocolError",
    "UpstreamResetError",
    "failure_of",
]
