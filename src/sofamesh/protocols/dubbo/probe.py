"""The Dubbo active health check: a heartbeat gets its reply (Dubbo's own liveness test).
The checker, its schedule and its thresholds are `upstream/health.py`'s.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import anyio

from sofamesh.codecs import dubbo
from sofamesh.endpoint import Endpoint

if TYPE_CHECKING:
    from sofamesh.upstream.health import HealthCheckConfig, ProbeConnect

_ids = itertools.count(1)


async def dubbo_probe(
    ep: Endpoint, config: HealthCheckConfig, connect: ProbeConnect | None = None
) -> bool:
    """A heartbeat event gets an OK event reply with the same id."""
    beat = dubbo.heartbeat(next(_ids))
    decoder = dubbo.FrameDecoder()
    opened = connect(ep, ()) if connect else anyio.connect_tcp(ep.host, ep.port)
    async with await opened as stream:
        await stream.send(dubbo.encode(beat))
        while True:
            try:
                decoder.receive_data(await stream.receive(65536))
                reply = decoder.next_frame()
            except dubbo.DubboProtocolError:
                return False
            if reply is not None:
                return (
                    isinstance(reply, dubbo.ResponseFrame)
                    and reply.event
                    and reply.request_id == beat.request_id
                    and reply.status == dubbo.Status.OK
                )
