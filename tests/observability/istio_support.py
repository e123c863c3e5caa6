"""Two sidecars with Istio's metrics on (shop -> orders -> a plain HTTP app), for the
dashboard tests: the app answers 500 on `/fail`, 200 otherwise; with `tls`, the hop
between the sidecars is mutual TLS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
from tests.security.pki import DOMAIN, issue_files

from sofamesh.config import load_config
from sofamesh.security.ca import CertificateAuthority
from sofamesh.sidecar.app import Sidecar

SERVICE = "orders.shop"


async def app(stream: anyio.abc.SocketStream) -> None:
    async with stream:
        try:
            while True:
                head = await stream.receive()
                status = b"500 Oops" if b"/fail" in head else b"200 OK"
                await stream.send(b"HTTP/1.1 " + status + b"\r\ncontent-length: 5\r\n\r\nhello")
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return


def strict_tls(out: Path) -> dict[str, dict[str, Any]]:
    """Per app, a `tls:` section in strict mode with an identity of one new mesh CA."""
    ca = CertificateAuthority.create(DOMAIN)
    ids = {app: issue_files(ca, out / app, app) for app in ("orders", "shop")}
    return {
        app: {"mode": "strict", "cert": f.cert, "key": f.key, "trust_bundle": f.trust_bundle}
        for app, f in ids.items()
    }


@asynccontextmanager
async def istio_mesh(
    rules: dict[str, Any] | None = None,
    tls: dict[str, dict[str, Any]] | None = None,
    **metrics: Any,
) -> AsyncIterator[tuple[Sidecar, Sidecar]]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    m = {"istio": True, **metrics}
    inbound = {"protocol": "http", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{port}",
               "services": [SERVICE]}  # fmt: skip
    base = {"registry": "memory://", "admin": "127.0.0.1:0", "metrics": m}
    orders = Sidecar(load_config({**base, "app": "orders", "metadata": {"version": "v2"},
                                  "inbound": [inbound], "rules": rules,
                                  **({"tls": tls["orders"]} if tls else {})}, env={}))  # fmt: skip
    out = {"protocol": "http", "listen": "127.0.0.1:0"}
    shop_tls = {"tls": tls["shop"]} if tls else {}
    shop = Sidecar(load_config({**base, "app": "shop", "outbound": [out], **shop_tls}, env={}))
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, app)
        await tg.start(orders.run)
        await tg.start(shop.run)
        yield shop, orders
        shop.stop()
        orders.stop()
        await shop.wait_stopped()
        await orders.wait_stopped()
        tg.cancel_scope.cancel()


async def traffic(shop: Sidecar, ok: int, failed: int) -> None:
    url = f"http://{shop.bound['outbound[0]']}"
    async with httpx.AsyncClient() as client:
        for path in ["/ok"] * ok + ["/fail"] * failed:
            r = await client.post(url + path, content=b"x" * 20, headers={"host": SERVICE})
            assert r.status_code == (500 if path == "/fail" else 200)


async def scrape(car: Sidecar) -> str:
    async with httpx.AsyncClient() as client:
        r = await client.get(f"http://{car.bound['admin']}/stats/prometheus")
    assert r.status_code == 200
    return r.text
