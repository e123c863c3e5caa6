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

Every call carries the sidecar's token (`Authorization: Bearer`): from
`SOFAMESH_SIDECAR_TOKEN`, else the file `SOFAMESH_SIDECAR_TOKEN_FILE` names, else
the file a sidecar with that admin port writes by default
(`sofamesh.config.local_api`). The sidecar only accepts publications its
`local_api` config allows.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import anyio
import anyio.abc

from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.config import Address
from sofamesh.config.local_api import TOKEN_ENV, TOKEN_FILE_ENV, default_token_path
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
        self._token: str | None = os.environ.get(TOKEN_ENV) or None
        self._token_from_file = self._token is None
        self._token_problem = ""

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
        resp = await self._send(method, path, body)
        if resp.status == 403 and self._token_from_file:
            # The sidecar restarted with a new token since we read it: read it again.
            self._token = None
            resp = await self._send(method, path, body)
        if resp.status == 403 and self._token_problem:
            raise SidecarUnavailable(f"sidecar refused {method} {path}: {self._token_problem}")
        if resp.status != 200:
            raise SidecarUnavailable(
                f"sidecar refused {method} {path}: {resp.status} {resp.body!r}"
            )
        return json.loads(resp.body) if resp.body else None

    async def _send(self, method: str, path: str, body: Any) -> HttpResponse:
        payload = json.dumps(body).encode() if body is not None else b""
        token = await self._read_token()
        req = HttpRequest(
            method=method,
            target=path,
            headers=[
                (b"host", str(self._admin).encode()),
                (b"content-type", b"application/json"),
                (b"authorization", b"Bearer " + token.encode()),
            ],
            body=payload,
        )
        try:
            with anyio.fail_after(5):
                return await self._pool.send(self._admin.host, self._admin.port, req)
        except (TransportError, TimeoutError) as e:
            raise SidecarUnavailable(f"sidecar API at {self._admin} unreachable: {e}") from e

    async def _read_token(self) -> str:
        """The token from `SOFAMESH_SIDECAR_TOKEN`, else from the file the sidecar wrote."""
        if self._token is None:
            path = anyio.Path(
                os.environ.get(TOKEN_FILE_ENV) or default_token_path(self._admin.port)
            )
            try:
                self._token, self._token_problem = (await path.read_text()).strip(), ""
            except OSError as e:
                # Asked without it, a sidecar refuses (and this problem is the message),
                # while no sidecar at all still reads as "unreachable".
                self._token_problem = (
                    f"cannot read its local API token at {path}: {e.strerror} "
                    f"(set {TOKEN_ENV} or {TOKEN_FILE_ENV} if the sidecar keeps it elsewhere)"
                )
                return ""
        return self._token

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
