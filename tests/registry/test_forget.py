"""`forget`: a process hands an endpoint over to another that publishes the same one.

After an in-place upgrade the old sidecar forgets its publications instead of
withdrawing them: closing it must leave the new process's entry in place, with no
withdrawal mark that would make watchers drop it.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from tests.registry import servers
from tests.registry.servers import EtcdServer, next_value
from tests.registry.test_etcd import EP, registry, ws

from sofamesh.registry import FileRegistry

pytestmark = pytest.mark.anyio
etcd_server = servers.etcd_server


async def test_etcd_keeps_a_key_the_new_owner_put_under_its_lease(
    etcd_server: EtcdServer, request: pytest.FixtureRequest
) -> None:
    w = ws(request)
    key = f"/sofamesh/{w}/services/com.example.Orders/http/127.0.0.1:8080".encode()
    mark = f"/sofamesh/{w}/services/com.example.Orders/!withdrawn/http/127.0.0.1:8080".encode()
    async with registry(etcd_server.port, w) as sub, sub.watch(EP.service) as snaps:
        assert await next_value(snaps) == frozenset()
        async with registry(etcd_server.port, w) as new:
            async with registry(etcd_server.port, w, lease_ttl=60) as old:
                await old.publish(EP)
                assert await next_value(snaps) == {EP}
                await new.publish(EP)
                old.forget(EP)
            # The old one closed (its lease revoked): the key is the new one's, unmarked.
            _rev, kv = await sub.client.get(key)
            assert kv is not None and kv.lease == new._lease
            _rev, marked = await sub.client.get(mark)
            assert marked is None


async def test_file_registry_leaves_a_forgotten_entry(tmp_path: Path) -> None:
    async with FileRegistry(tmp_path) as new:
        async with FileRegistry(tmp_path) as old:
            await old.publish(EP)
            await new.publish(EP)
            old.forget(EP)
        folder = anyio.Path(tmp_path / "services" / EP.service)
        entries = sorted([p.name async for p in folder.iterdir()])
        assert entries == ["127.0.0.1_8080_http.json"]  # no withdrawal mark either
        (seen,) = new._scan(EP.service)
        assert seen == EP
