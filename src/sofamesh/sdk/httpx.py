"""`httpx` integration: `httpx.AsyncClient(transport=mesh.httpx_transport())`.

The URL's host names the service (`http://com.example.Orders/orders/1`), and
the request goes through discovery, balancing and the outbound chain. Works
under asyncio and trio, as httpx does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from sofamesh.codecs.http1 import HttpRequest
from sofamesh.protocols.http.mapping import request_to_invocation, result_to_response

if TYPE_CHECKING:
    from sofamesh.sdk.mesh import Mesh


class MeshTransport(httpx.AsyncBaseTransport):
    def __init__(self, mesh: Mesh) -> None:
        self._mesh = mesh

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        req = HttpRequest(
            method=request.method,
            target=request.url.raw_path.decode("ascii"),
            headers=[(k.lower(), v) for k, v in request.headers.raw],
            body=body,
        )
        inv = request_to_invocation(req)
        timeout = request.extensions.get("timeout", {}).get("read")
        if timeout is not None:
            inv.deadline = self._mesh.runtime.clock.now() + float(timeout)
        resp = result_to_response(await self._mesh.invoke(inv), inv.service)
        return httpx.Response(
            status_code=resp.status,
            headers=resp.headers,
            content=resp.body,
            extensions={"http_version": b"HTTP/1.1"},
        )
