"""Sidecars with mutual TLS in this process, for the tests of every protocol's hops."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from tests.security.pki import issue_files

from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.config import Address, load_config
from sofamesh.protocols.http.server import ConnInfo, Http1Server
from sofamesh.security.ca import CertificateAuthority
from sofamesh.security.identity import IdentityFiles
from sofamesh.sidecar.app import Sidecar

ORDERS = "com.example.Orders"


def tls_of(files: IdentityFiles, mode: str) -> dict[str, str]:
    return {"mode": mode, "cert": files.cert, "key": files.key, "trust_bundle": files.trust_bundle}


async def echo(req: HttpRequest, _conn: ConnInfo) -> HttpResponse:
    """The app: answers with the caller the mesh told it about."""
    headers = dict(req.headers)
    body = json.dumps({"caller": headers.get(b"x-sofamesh-caller", b"").decode()}).encode()
    return HttpResponse(200, [(b"content-type", b"application/json")], body)


@asynccontextmanager
async def app_server() -> AsyncIterator[int]:
    """A plain HTTP app on loopback; yields its port."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        server = Http1Server(echo)
        await tg.start(server.serve, listener)
        yield port
        tg.cancel_scope.cancel()


@asynccontextmanager
async def sidecar(config: dict[str, Any]) -> AsyncIterator[Sidecar]:
    car = Sidecar(load_config(config, env={}))
    async with anyio.create_task_group() as tg:
        await tg.start(car.run)
        yield car
        car.stop()


def provider_config(
    tmp: Path, files: IdentityFiles | None, mode: str, upstream: int, rules: Any = None
) -> dict[str, Any]:
    return {
        "app": "orders",
        "registry": f"file://{tmp}/reg?poll=0.05",
        "inbound": [
            {
                "protocol": "http",
                "listen": "127.0.0.1:0",
                "upstream": f"127.0.0.1:{upstream}",
                "services": [ORDERS],
            }
        ],
        **({"tls": tls_of(files, mode)} if files is not None else {}),
        **({"rules": rules} if rules is not None else {}),
    }


def caller_config(tmp: Path, app: str, files: IdentityFiles | None, mode: str) -> dict[str, Any]:
    return {
        "app": app,
        "registry": f"file://{tmp}/reg?poll=0.05",
        "outbound": [{"protocol": "http", "listen": "127.0.0.1:0"}],
        **({"tls": tls_of(files, mode)} if files is not None else {}),
    }


def identities(ca: CertificateAuthority, tmp: Path, *apps: str) -> dict[str, IdentityFiles]:
    return {app: issue_files(ca, tmp / app, app) for app in apps}


def outbound(car: Sidecar) -> Address:
    return car.bound["outbound[0]"]


def inbound(car: Sidecar) -> Address:
    return car.bound["inbound[0]"]
