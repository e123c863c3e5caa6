"""Registry removals are believed carefully: a real sidecar under constant load.

A plain HTTP app is published in the file registry by this process (the owner, which
renews its entry every third of the lease); a consumer sidecar calls it through its
outbound listener, without pause. Deleting the entry by hand is a removal its owner did
not make: the sidecar holds it for a lease, the owner writes the entry again within a
third of one, and no call fails. An owner that unpublishes as it shuts down is believed
at once: the very next calls find no endpoint instead of reaching the app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from sofamesh.demo.procs import Procs
from sofamesh.endpoint import Endpoint
from sofamesh.registry import FileRegistry

pytestmark = pytest.mark.anyio

ORDERS = "com.example.Orders"
LEASE = 6.0  # the owner rewrites its entry every 2 s; a hold lasts 6 s


class Load:
    """Calls ORDERS through the sidecar one after another; each answer wakes the waiters."""

    def __init__(self, client: httpx.AsyncClient, outbound: str) -> None:
        self.client, self.url = client, f"http://{outbound}/orders"
        self.ok = 0
        self.failed: list[tuple[int, str]] = []
        self.last: httpx.Response | None = None
        self._answered = anyio.Event()

    async def run(self) -> None:
        while True:
            r = await self.client.get(self.url, headers={"host": ORDERS})
            if r.status_code == 200 and "orders-1" in r.text:
                self.ok += 1
            else:
                self.failed.append((r.status_code, r.headers.get("x-sofamesh-error", "")))
            self.last = r
            self._answered.set()
            self._answered = anyio.Event()

    async def next(self) -> None:
        await self._answered.wait()

    async def until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait, one answer at a time, until `condition` holds."""
        with anyio.fail_after(timeout):
            while not condition():
                await self._answered.wait()


@asynccontextmanager
async def consumer(
    tmp: Path, backend: str
) -> AsyncIterator[tuple[Procs, dict[str, Any], Endpoint, httpx.AsyncClient]]:
    async with Procs(tmp, backend) as procs, httpx.AsyncClient(timeout=10) as client:
        app = await procs.plain_app("orders-1")
        config = {
            "app": "shop",
            "registry": f"file://{tmp}/reg?poll=0.05&lease={LEASE}",
            "admin": "127.0.0.1:0",
            "outbound": [{"protocol": "http", "listen": "127.0.0.1:0"}],
        }
        bound = await procs.sidecar("shop", config)
        yield procs, bound, Endpoint(ORDERS, "127.0.0.1", app["port"], app="orders"), client


async def registry_state(client: httpx.AsyncClient, admin: str) -> list[str]:
    """How the sidecar's ORDERS cluster holds each endpoint ("listed" or "held")."""
    clusters = (await client.get(f"http://{admin}/clusters")).json()["clusters"]
    rows = [c for c in clusters if c["service"] == ORDERS]
    return [e.get("registry", "listed") for e in rows[0]["endpoints"]] if rows else []


async def test_entries_deleted_by_hand_fail_no_call_while_the_owner_rewrites_them(
    tmp_path: Path, anyio_backend: str
) -> None:
    async with consumer(tmp_path, anyio_backend) as (_procs, bound, ep, client):
        owner = FileRegistry(tmp_path / "reg", lease=LEASE, poll_interval=0.05)
        async with owner, anyio.create_task_group() as tg:
            await owner.publish(ep)
            load = Load(client, bound["outbound[0]"])
            tg.start_soon(load.run)
            await load.until(lambda: load.ok >= 20)
            entry = next((tmp_path / "reg" / "services").rglob("*.json"))
            renewed = entry.stat().st_mtime_ns
            # Just after a renewal, so the entry stays away for most of a third of a lease.
            await load.until(lambda: entry.stat().st_mtime_ns != renewed, timeout=LEASE)
            entry.unlink()  # the attacker's (or a careless operator's) deletion
            states = ["listed"]
            while states == ["listed"]:  # until the sidecar has seen the entry go
                await load.next()
                states = await registry_state(client, bound["admin"])
            held_at, noticed = load.ok, states
            await load.until(entry.exists, timeout=LEASE)  # the owner's next renewal
            while states != ["listed"]:
                await load.next()
                states = await registry_state(client, bound["admin"])
            await load.until(lambda: load.ok >= held_at + 20)
            tg.cancel_scope.cancel()
        assert load.failed == []
        assert noticed == ["held"] and states == ["listed"] and load.ok > held_at
        log = (tmp_path / "sidecar-shop.log").read_text()
        assert "without their owners unpublishing them" in log
        stats = (await client.get(f"http://{bound['admin']}/stats")).json()
        assert stats["counters"]["registry.removals_held"] == 1


async def test_an_owner_that_unpublishes_on_shutdown_stops_receiving_calls_at_once(
    tmp_path: Path, anyio_backend: str
) -> None:
    async with consumer(tmp_path, anyio_backend) as (_procs, bound, ep, client):
        load = Load(client, bound["outbound[0]"])
        async with anyio.create_task_group() as tg:
            async with FileRegistry(tmp_path / "reg", lease=LEASE, poll_interval=0.05) as owner:
                await owner.publish(ep)
                tg.start_soon(load.run)
                await load.until(lambda: load.ok >= 20)
            # Closed: the owner unpublished. Well within a lease, calls find no endpoint.
            await load.until(lambda: bool(load.failed), timeout=LEASE / 3)
            served = load.ok
            await load.until(lambda: len(load.failed) >= 20)
            tg.cancel_scope.cancel()
        assert load.ok == served  # nothing reached the app after the first refusal
        assert set(load.failed) == {(503, "no_endpoint")}
        assert await registry_state(client, bound["admin"]) == []
