"""The issue's six spellings of a protected path, through a real sidecar process.

Inbound auth lets only `batch-app` call `/orders/export`. Caller `web` sends the
path spelled six ways, over HTTP/1.1 (raw socket) and over h2c (raw HTTP/2
frames, so no client library normalises first): each is refused as
`/orders/export` is, and `batch-app`'s requests reach the app with the
normalised path, the one the rule judged.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import h2.config
import h2.connection
import h2.events
import pytest
from raw_http import PATIENCE, RecordingUpstream, exchange, recording_upstream

from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.demo.procs import Procs
from sofamesh.protocols.h2.http import H2HttpHandler
from sofamesh.protocols.h2.server import H2Server

pytestmark = pytest.mark.anyio

ORDERS = "com.example.Orders"
RULES = {
    "version": "paths-1",
    "auth": {
        "inbound": {
            "rules": [{"service": ORDERS, "method": "/orders/export", "allow": ["batch-app"]}]
        }
    },
}
SPELLINGS = [
    "//orders/export",
    "/orders//export",
    "/orders/./export",
    "/orders/x/../export",
    "/orders/%65xport",
    "http://x/orders/export",  # absolute form: HTTP/1.1 only
]


@asynccontextmanager
async def h2c_app(seen: list[str]) -> AsyncIterator[int]:
    """An h2c app recording the targets it receives."""

    async def app(req: HttpRequest) -> HttpResponse:
        seen.append(req.target)
        return HttpResponse(200, [], json.dumps({"target": req.target}).encode())

    server = H2Server(H2HttpHandler(app, max_body=1 << 20))
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with listener, anyio.create_task_group() as tg:
        await tg.start(server.serve, listener)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()


@asynccontextmanager
async def mesh(
    tmp: Path, backend: str, h2_seen: list[str]
) -> AsyncIterator[tuple[RecordingUpstream, dict[str, Any]]]:
    async with (
        recording_upstream() as (upstream, port),
        h2c_app(h2_seen) as h2_port,
        Procs(tmp, backend) as procs,
    ):
        listeners = [
            {
                "protocol": p,
                "listen": "127.0.0.1:0",
                "upstream": f"127.0.0.1:{up}",
                "services": [ORDERS],
            }
            for p, up in (("http", port), ("h2", h2_port))
        ]
        config = {
            "app": "orders",
            "registry": f"file://{tmp}/reg",
            "rules": RULES,
            "inbound": listeners,
        }
        yield upstream, await procs.sidecar("orders", config)


def http1(target: str, caller: str) -> bytes:
    return (
        f"GET {target} HTTP/1.1\r\nHost: {ORDERS}\r\n"
        f"x-sofamesh-service: {ORDERS}\r\nx-sofamesh-caller: {caller}\r\n\r\n"
    ).encode()


async def h2_get(address: str, path: str, caller: str) -> int:
    """One GET over a fresh h2c connection, `:path` exactly as given; its status."""
    host, port = address.rsplit(":", 1)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    headers = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", path),
        (":authority", ORDERS),
        ("x-sofamesh-caller", caller),
    ]
    conn.send_headers(sid, headers, end_stream=True)
    status = 0
    with anyio.fail_after(PATIENCE):
        async with await anyio.connect_tcp(host, int(port)) as stream:
            while True:
                await stream.send(conn.data_to_send())
                for event in conn.receive_data(await stream.receive()):
                    if isinstance(event, h2.events.ResponseReceived):
                        status = int(dict(event.headers)[b":status"])
                    elif isinstance(event, h2.events.DataReceived):
                        conn.acknowledge_received_data(event.flow_controlled_length, sid)
                    elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                        return status


async def test_six_spellings_are_judged_as_the_path(tmp_path: Path, anyio_backend: str) -> None:
    h2_seen: list[str] = []
    async with mesh(tmp_path, anyio_backend, h2_seen) as (upstream, ready):
        http, h2c = ready["inbound[0]"], ready["inbound[1]"]
        for target in ["/orders/export", *SPELLINGS]:
            denied = await exchange(http, http1(target, "web"), wait_close=False)
            assert denied.response is not None and denied.response.status == 403, target
            allowed = await exchange(http, http1(target, "batch-app"), wait_close=False)
            assert allowed.response is not None and allowed.response.status == 200, target
            if target.startswith("/"):
                assert await h2_get(h2c, target, "web") == 403, target
                assert await h2_get(h2c, target, "batch-app") == 200, target
        other = await exchange(http, http1("/orders/1", "web"), wait_close=False)
        assert other.response is not None and other.response.status == 200
    # The apps got only batch-app's requests (and web's call to another path), normalised.
    assert [r.target for r in upstream.requests] == ["/orders/export"] * 7 + ["/orders/1"]
    assert h2_seen == ["/orders/export"] * 6
