"""The Bolt active health check: a heartbeat gets a SUCCESS ack (MOSN's and SOFARPC's check).
The checker, its schedule and its thresholds are `upstream/health.py`'s.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import anyio

from sofamesh.codecs import bolt
from sofamesh.endpoint import Endpoint

if TYPE_CHECKING:
    from sofamesh.upstream.health import HealthCheckConfig, ProbeConnect

_heartbeat_ids = itertools.count(1)


async def bolt_probe(
    ep: Endpoint, config: HealthCheckConfig, connect: ProbeConnect | None = None
) -> bool:
    """A Bolt heartbeat (command code 0) gets a SUCCESS heartbeat ack."""
    frame = bolt.heartbeat(
        next(_heartbeat_ids) & 0x7FFFFFFF, timeout_ms=max(1, int(config.timeout * 1000))
    )
    decoder = bolt.FrameDecoder()
    opened = connect(ep, ()) if connect else anyio.connect_tcp(ep.host, ep.port)
    async with await opened as stream:
        await stream.send(bolt.encode(frame))
        while True:
            try:
                decoder.receive_data(await stream.receive(65536))
                reply = decoder.next_frame()
            except bolt.BoltProtocolError:
                return False
            if reply is None:
                continue
            return (
                isinstance(reply, bolt.ResponseFrame)
                and reply.is_heartbeat
                and reply.request_id == frame.request_id
                and reply.status == bolt.ResponseStatus.SUCCESS
            )
