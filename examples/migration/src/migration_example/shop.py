"""The shop: calls the orders service through the mesh.

The code is the same whether the mesh runs in the app (`mode: sdk`) or in a
local sidecar (`mode: sidecar`): only the configuration changes, which is the
migration the tests prove harmless.
"""

from __future__ import annotations

from typing import Any

import httpx

from migration_example.orders import SERVICE


async def order_status(client: httpx.AsyncClient, order_id: str) -> tuple[int, dict[str, Any]]:
    """Look an order up; the client's transport is the mesh's (`mesh.httpx_transport()`)."""
    resp = await client.get(f"http://{SERVICE}/orders/{order_id}")
    return resp.status_code, (resp.json() if resp.status_code == 200 else {})
