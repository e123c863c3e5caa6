"""The HTTP active health check: `GET path` answers with an expected status (Envoy's
`http_health_check`). The checker, its schedule and its thresholds are `upstream/health.py`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import anyio.abc

from sofamesh.endpoint import Endpoint
from sofamesh.lazy_imports import lazy_module
from sofamesh.transport.tls_names import ALPN_HTTP1

if TYPE_CHECKING:
    import h11

    from sofamesh.upstream.health import HealthCheckConfig, ProbeConnect
else:  # imported with the first probe
    h11 = lazy_module("h11")


async def http_probe(
    ep: Endpoint, config: HealthCheckConfig, connect: ProbeConnect | None = None
) -> bool:
    """`GET config.path` answers with a status in `expected_statuses` (over mTLS to an endpoint
    that publishes it, when `connect` is the runtime's)."""
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="GET",
        target=config.path,
        headers=[("host", ep.address), ("user-agent", "sofamesh-health"), ("connection", "close")],
    )
    opened = connect(ep, ALPN_HTTP1) if connect else anyio.connect_tcp(ep.host, ep.port)
    async with await opened as stream:
        try:
            await stream.send(conn.send(request) + (conn.send(h11.EndOfMessage()) or b""))
            return await _status_ok(conn, stream, config)
        except h11.ProtocolError:
            return False


async def _status_ok(
    conn: h11.Connection, stream: anyio.abc.ByteStream, config: HealthCheckConfig
) -> bool:
    received = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive(65536)
            received += len(data)
            if received > config.max_response_bytes:
                return False
            conn.receive_data(data)
        elif isinstance(event, h11.Response):
            low, high = config.expected_statuses
            return low <= event.status_code < high
        else:
            return False  # closed without a response
