"""What the attack tests put behind a real sidecar process, and how they watch it.

The app runs in the test process on 127.0.0.1 (HTTP/1.1 or h2c); the sidecar is a
`python -m sofamesh.sidecar` process from the `sofamesh_sidecar` fixture.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from sofamesh.codecs.http1 import DEFAULT_LIMITS, Http1Limits, HttpRequest, HttpResponse
from sofamesh.protocols.h2.http import H2HttpHandler
from sofamesh.protocols.h2.server import H2Server
from sofamesh.protocols.http.server import Http1Server
from sofamesh.testing.plugin import SidecarFactory
from sofamesh.testing.process import SidecarProcess
from sofamesh.transport.budget import OVERLOAD, Overload

SERVICE = "com.example.Heavy"
MIB = 1024 * 1024
BIG = 10 * MIB
# Not one repeated byte: a piece out of place or lost changes the checksum.
PATTERN = hashlib.sha256(b"sofamesh").digest() * 7  # 224 bytes
BIG_BODY = (PATTERN * (BIG // len(PATTERN) + 1))[:BIG]
BIG_SUM = hashlib.sha256(BIG_BODY).hexdigest()

Handler = Callable[[HttpRequest, object], Awaitable[HttpResponse]]


@asynccontextmanager
async def app_server(
    handler: Handler,
    *,
    h2c: bool = False,
    limits: Http1Limits = DEFAULT_LIMITS,
    max_connections: int = 10_000,
    overload: Overload = OVERLOAD,
) -> AsyncIterator[int]:
    """`handler` served on a free port of 127.0.0.1 (HTTP/1.1, or h2c); yields the port."""
    server: Http1Server | H2Server
    if h2c:
        server = H2Server(H2HttpHandler(lambda req: handler(req, None), max_body=MIB))
    else:
        server = Http1Server(handler, limits, max_connections=max_connections, overload=overload)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve, listener)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


async def counter(sidecar: SidecarProcess, name: str) -> int:
    return int((await sidecar.stats())["counters"].get(name, 0))


async def big_or_ok(req: HttpRequest, _conn: object) -> HttpResponse:
    """`/big`: one shared 10 MiB body; anything else: `ok`."""
    body = BIG_BODY if req.target == "/big" else b"ok"
    return HttpResponse(200, [(b"content-type", b"application/octet-stream")], body)


async def provider(
    sofamesh_sidecar: SidecarFactory, protocol: str, upstream: int, **config: Any
) -> SidecarProcess:
    """A sidecar "heavy" with one inbound listener of `protocol` for `SERVICE` in front of
    127.0.0.1:`upstream`; `limits` go to the listener, other `config` to the sidecar."""
    limits = config.pop("limits", {})
    inbound = {"protocol": protocol, "upstream": f"127.0.0.1:{upstream}", "services": [SERVICE],
               "limits": limits}  # fmt: skip
    return await sofamesh_sidecar("heavy", inbound=[inbound], **config)
