"""The SDK's side of the local sidecar API (sidecar mode).

In sidecar mode the SDK neither reads the registry nor dials providers: it
asks the local sidecar (its admin address, `SOFAMESH_SIDECAR`) where to send
outbound calls, and registers its providers there. The sidecar publishes them
under its own inbound address and forwards their traffic to the SDK's port.
This is the role MOSN's port 13330 plays for SOFARPC apps.

| call | body | effect |
|---|---|---|
| `GET /api/v1/info` | - | the sidecar's app, listeners and version |
| `POST /api/v1/publish` | `{"service", "protocol", "upstream", "lease"}` | publish (or renew) |
| `POST /api/v1/unpublish` | `{"service", "protocol"}` | withdraw |
| `POST /api/v1/subscribe` | `{"service"}` | start following a service ahead of the first call |

A publication is a lease: the SDK renews it every lease/3, so a sidecar
withdraws the services of an app that died without saying goodbye.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import anyio.abc

from sofamesh.codecs.http1 import HttpRequest
from sofamesh.config import Address
from sofamesh.protocols.http.pool import Http1Pool
from sofamesh.transport.errors import TransportError

log = logging.getLogger("sofamesh.sdk")

LEASE = 10.0


class SidecarUnavailable(RuntimeError):
    """The local sidecar's API could not be reached or refused a call."""


class SidecarClient:
    def __init__(self, pool: Http1Pool, admin: Address, app: str):
        self._pool = pool
        self._admin = admin
        self._app = app
        self._published: dict[tuple[str, str], Address] = {}
        self.outbound: dict[str, Address] = {}  # protocol -> the sidecar's outbound listener

    async def connect(self) -> None:
        """Learn the sidecar's listeners; raises `SidecarUnavailable` if it cannot be asked."""
        info = await self.call("GET", "/api/v1/info")
        for listener in reversed(info.get("outbound", [])):  # the first of each protocol wins
            self.outbound[str(listener["protocol"])] = Address.parse(listener["listen"])

    def outbound_for(self, protocol: str) -> Address:
        """Where the sidecar takes this app's calls in `protocol`."""
        address = self.outbound.get(protocol)
        if address is None and protocol == "grpc":
            address = self.outbound.get("h2")  # an h2 listener carries gRPC too
        if address is None:
            raise SidecarUnavailable(
                f"the sidecar at {self._admin} has no outbound {protocol} listener"
            )
        return address

    @property
    def outbound_http(self) -> Address:
        return self.outbound_for("http")

    def start_renewing(self, tg: anyio.abc.TaskGroup) -> None:
        """Keep publications alive from now on, in the mesh's task group."""
        tg.start_soon(self._renew_forever)

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        payload = json.dumps(body).encode() if body is not None else b""
        req = HttpRequest(
            method=method,
            target=path,
            headers=[
                (b"host", str(self._admin).encode()),
                (b"content-type", b"application/json"),
            ],
            body=payload,
        )
        try:
            with anyio.fail_after(5):
                resp = await self._pool.send(self._admin.host, self._admin.port, req)
        except (TransportError, TimeoutError) as e:
            raise SidecarUnavailable(f"sidecar API at {self._admin} unreachable: {e}") from e
        if resp.status != 200:
            raise SidecarUnavailable(
                f"sidecar refused {method} {path}: {resp.status} {resp.body!r}"
            )
        return json.loads(resp.body) if resp.body else None

    async def publish(self, service: str, protocol: str, upstream: Address) -> None:
        self._published[(service, protocol)] = upstream
        await self._send_publish(service, protocol, upstream)

    async def _send_publish(self, service: str, protocol: str, upstream: Address) -> None:
        await self.call(
            "POST",
            "/api/v1/publish",
            {
                "service": service,
                "protocol": protocol,
                "upstream": str(upstream),
                "app": self._app,
                "lease": LEASE,
            },
        )

    async def unpublish(self, service: str, protocol: str) -> None:
        self._published.pop((service, protocol), None)
        with anyio.CancelScope(shield=True):
            try:
                await self.call(
                    "POST", "/api/v1/unpublish", {"service": service, "protocol": protocol}
                )
            except SidecarUnavailable as e:
                log.warning("could not unpublish %s: %s (its lease will expire)", service, e)

    async def _renew_forever(self) -> None:
        while True:
            await anyio.sleep(LEASE / 3)
            for (service, protocol), upstream in list(self._published.items()):
                try:
                    await self._send_publish(service, protocol, upstream)
                except SidecarUnavailable as e:
                    log.warning("renewing %s with the sidecar failed: %s", service, e)
