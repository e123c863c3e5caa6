"""The local API's registrations: published under the sidecar's address, withdrawn when their
lease runs out, and no timer runs while there are none."""

from __future__ import annotations

import anyio
import pytest

from sofamesh.clock import FakeClock
from sofamesh.config import Address, load_config
from sofamesh.sidecar import Sidecar

pytestmark = pytest.mark.anyio


async def test_a_registration_whose_lease_ran_out_is_withdrawn() -> None:
    config = {
        "app": "orders",
        "registry": "memory://",
        "inbound": [{"protocol": "http", "listen": "127.0.0.1:0"}],
    }
    clock = FakeClock()
    sc = Sidecar(load_config(config, env={}), clock=clock)
    async with anyio.create_task_group() as tg:
        await tg.start(sc.run)
        await anyio.wait_all_tasks_blocked()
        expiry = sc._registered
        assert expiry is not None and not expiry.is_set()  # asleep: nothing to expire
        async with sc.runtime.registry.watch("svc") as snaps:
            assert await anext(snaps) == frozenset()
            ep = await sc.register("svc", "http", Address("127.0.0.1", 9), "app", lease=5)
            assert expiry.is_set()
            assert await anext(snaps) == {ep}
            clock.advance(6)  # past the lease
            with anyio.fail_after(5):  # checked once a second
                assert await anext(snaps) == frozenset()
        assert sc.registrations == {}
        sc.stop()
