"""The same rule, unit-tested in milliseconds: no process, no socket."""

from __future__ import annotations

import pytest
from migration_example.orders import SERVICE, app
from migration_example.shop import order_status

from sofamesh.testing import mesh_for

pytestmark = pytest.mark.anyio


async def test_the_shop_under_a_fault_and_a_rate_limit() -> None:
    async with mesh_for(app, [SERVICE], consumer_app="shop") as h, h.client() as client:
        assert (await order_status(client, "7"))[1]["order"] == "7"
        h.set_rules({"faults": [{"service": SERVICE, "abort": {"code": 503}}]})
        assert (await order_status(client, "7"))[0] == 503
        h.set_rules({"rate_limits": [{"service": SERVICE, "direction": "outbound", "count": 1}]})
        assert [(await order_status(client, "7"))[0] for _ in range(2)] == [200, 429]
