"""The transparent outbound listener in this process, dialled directly (no redirect): the
`Host` alone decides, and anything else is closed, since relaying a connection to the
listener's own address would loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

import sofamesh
from sofamesh.config import load_config
from sofamesh.sidecar.app import Sidecar

pytestmark = pytest.mark.anyio


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    caller = dict(scope["headers"]).get(b"x-sofamesh-caller", b"")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"orders for " + caller})


@pytest.fixture
async def transparent(tmp_path: Path) -> AsyncIterator[tuple[str, Sidecar]]:
    registry = f"file://{tmp_path}/reg?poll=0.05"
    config = load_config(
        {
            "app": "shop",
            "registry": registry,
            "intercept": {"outbound": "127.0.0.1:0", "refresh": 0.05},
        },
        env={},
    )
    async with (
        sofamesh.open_mesh({"app": "orders", "registry": registry}, env={}) as mesh,
        mesh.serve_asgi(_app, services=["orders"]),
        anyio.create_task_group() as tg,
    ):
        car: Sidecar = await tg.start(Sidecar(config).run)
        yield f"http://{car.bound['transparent_outbound']}", car
        car.stop()


async def _get(url: str, host: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.get(url, headers={"host": host})


async def test_the_host_names_the_service(transparent: tuple[str, Sidecar]) -> None:
    url, car = transparent
    with anyio.fail_after(10):
        while True:  # the directory reads the registry every 0.05 s: poll, with a deadline
            try:
                r: httpx.Response | None = await _get(f"{url}/x", "orders.mesh.local:8080")
            except httpx.TransportError:  # closed: the name is not known yet
                r = None
            if r is not None and r.status_code == 200:
                break
            await anyio.sleep(0.05)
    assert r is not None and r.text == "orders for shop"
    assert car.runtime.stats.counters["intercept.outbound.mesh"] >= 1


@pytest.mark.parametrize("host", ["example.com", "10.9.9.9:80"])
async def test_anything_else_is_closed(transparent: tuple[str, Sidecar], host: str) -> None:
    url, car = transparent
    with pytest.raises(httpx.TransportError):
        await _get(f"{url}/x", host)
    assert car.runtime.stats.counters["intercept.outbound.refused"] == 1


async def test_bytes_of_no_protocol_are_closed(transparent: tuple[str, Sidecar]) -> None:
    url, car = transparent
    host, port = url.removeprefix("http://").split(":")
    async with await anyio.connect_tcp(host, int(port)) as stream:
        await stream.send(b"\x00\x01 not a protocol\r\n")
        with anyio.fail_after(10), pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
            await stream.receive()
    assert car.runtime.stats.counters["intercept.outbound.refused"] == 1
