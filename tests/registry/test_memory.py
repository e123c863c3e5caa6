from __future__ import annotations

import anyio
import pytest

from sofamesh.endpoint import Endpoint
from sofamesh.registry import MemoryHub, MemoryRegistry

pytestmark = pytest.mark.anyio


async def test_watchers_see_every_change_as_whole_snapshots() -> None:
    hub = MemoryHub()
    a = Endpoint("svc", "127.0.0.1", 1)
    b = Endpoint("svc", "127.0.0.1", 2)
    async with MemoryRegistry(hub) as reg, reg.watch("svc") as snaps:
        with anyio.fail_after(1):
            assert await snaps.__anext__() == frozenset()
            await reg.publish(a)
            assert await snaps.__anext__() == {a}
            await reg.publish(b)
            assert await snaps.__anext__() == {a, b}
            await reg.unpublish(a)
            assert await snaps.__anext__() == {b}


async def test_closing_withdraws_own_endpoints_only() -> None:
    hub = MemoryHub()
    mine, theirs = Endpoint("svc", "h", 1), Endpoint("svc", "h", 2)
    async with MemoryRegistry(hub) as other:
        await other.publish(theirs)
        async with MemoryRegistry(hub) as reg:
            await reg.publish(mine)
            assert hub.snapshot("svc") == {mine, theirs}
        assert hub.snapshot("svc") == {theirs}
        assert await other.list_services() == ["svc"]


async def test_an_unpublish_leaves_a_withdrawal_mark_until_published_again() -> None:
    hub = MemoryHub()
    a, b = Endpoint("svc", "h", 1), Endpoint("svc", "h", 2)
    async with MemoryRegistry(hub) as reg, reg.watch("svc") as snaps:
        with anyio.fail_after(1):
            assert (await snaps.__anext__()).withdrawn == frozenset()
            await reg.publish(a)
            await reg.publish(b)
            assert await snaps.__anext__() == {a, b}
            await reg.unpublish(a)
            await reg.unpublish(b)
            # The watcher wakes once for both changes: the marks tell it why both went.
            snap = await snaps.__anext__()
            assert snap == frozenset() and snap.withdrawn == {a.key, b.key} and snap.lease > 0
            await reg.publish(a)
            assert (await snaps.__anext__()).withdrawn == {b.key}


async def test_closing_withdraws_with_marks() -> None:
    hub = MemoryHub()
    async with MemoryRegistry(hub) as reg:
        await reg.publish(Endpoint("svc", "h", 1))
    assert hub.snapshot("svc").withdrawn == {Endpoint("svc", "h", 1).key}
