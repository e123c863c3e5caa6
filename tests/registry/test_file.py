"""The embedded file registry: atomic entries, leases, dead owners, prompt watches."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from sofamesh.endpoint import Endpoint
from sofamesh.registry import FileRegistry, open_registry

pytestmark = pytest.mark.anyio

EP = Endpoint("com.example.Orders", "127.0.0.1", 8080, version="1.0", zone="z1", tags={"canary"})


async def next_snapshot(snaps, timeout: float = 3.0):  # type: ignore[no-untyped-def]
    with anyio.fail_after(timeout):
        return await snaps.__anext__()


async def test_publish_then_watch_sees_endpoint_with_metadata(tmp_path: Path) -> None:
    async with FileRegistry(tmp_path, poll_interval=0.05) as reg, reg.watch(EP.service) as snaps:
        assert await next_snapshot(snaps) == frozenset()
        await reg.publish(EP)
        (seen,) = await next_snapshot(snaps)
        assert seen == EP and seen.tags == frozenset({"canary"}) and seen.zone == "z1"


async def test_unpublish_is_seen_by_another_registry_instance(tmp_path: Path) -> None:
    async with (
        FileRegistry(tmp_path, poll_interval=0.05) as pub,
        FileRegistry(tmp_path, poll_interval=0.05) as sub,
    ):
        await pub.publish(EP)
        async with sub.watch(EP.service) as snaps:
            assert await next_snapshot(snaps) == {EP}
            await pub.unpublish(EP)
            assert await next_snapshot(snaps) == frozenset()


async def test_close_unpublishes(tmp_path: Path) -> None:
    async with FileRegistry(tmp_path) as reg:
        await reg.publish(EP)
        assert await reg.list_services() == [EP.service]
    async with FileRegistry(tmp_path) as reg:
        assert await reg.list_services() == []


async def test_expired_lease_is_ignored_and_removed(tmp_path: Path) -> None:
    async with FileRegistry(tmp_path) as reg:
        await reg.publish(EP)
        path = next((tmp_path / "services").rglob("*.json"))
        entry = json.loads(path.read_text())
        entry["expires"] = time.time() - 1
        path.write_text(json.dumps(entry))
        async with reg.watch(EP.service) as snaps:
            assert await next_snapshot(snaps) == frozenset()
        assert not path.exists()


async def test_corrupt_entry_is_not_an_endpoint(tmp_path: Path) -> None:
    d = tmp_path / "services" / "svc"
    d.mkdir(parents=True)
    (d / "x_1_http.json").write_text("{not json")
    async with FileRegistry(tmp_path) as reg, reg.watch("svc") as snaps:
        assert await next_snapshot(snaps) == frozenset()


async def test_owner_killed_with_sigkill_vanishes_before_lease_ends(tmp_path: Path) -> None:
    # A child process publishes with a long lease, then is SIGKILLed: no unpublish, yet
    # watchers drop it at the next poll because its pid no longer runs.
    script = (
        "import anyio,sys\n"
        "from sofamesh.registry import FileRegistry\n"
        "from sofamesh.endpoint import Endpoint\n"
        "async def main():\n"
        f"    async with FileRegistry({str(tmp_path)!r}, lease=60) as r:\n"
        "        await r.publish(Endpoint('svc', '127.0.0.1', 9999))\n"
        "        print('up', flush=True)\n"
        "        await anyio.sleep_forever()\n"
        "anyio.run(main)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)  # noqa: ASYNC220
    try:
        assert proc.stdout is not None
        assert (await anyio.to_thread.run_sync(proc.stdout.readline)).strip() == b"up"
        async with FileRegistry(tmp_path, poll_interval=0.05) as reg, reg.watch("svc") as snaps:
            assert len(await next_snapshot(snaps)) == 1
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            assert await next_snapshot(snaps, timeout=1.0) == frozenset()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


async def test_lease_is_renewed_by_the_owner(tmp_path: Path) -> None:
    async with FileRegistry(tmp_path, lease=0.3) as reg:
        await reg.publish(EP)
        path = next((tmp_path / "services").rglob("*.json"))
        first = json.loads(path.read_text())["expires"]
        # Renewal is the registry's own timer; watch for it as a watcher would.
        with anyio.fail_after(3):
            while json.loads(path.read_text())["expires"] == first:  # noqa: ASYNC110
                await anyio.sleep(0.02)


async def test_open_registry_by_url(tmp_path: Path) -> None:
    async with open_registry(f"file://{tmp_path}?poll=0.05") as reg:
        assert isinstance(reg, FileRegistry) and reg.poll_interval == 0.05
    with pytest.raises(ValueError, match="unknown registry scheme"):
        open_registry("nope://x")


async def test_an_unpublish_leaves_a_withdrawal_mark_for_one_lease(tmp_path: Path) -> None:
    async with (
        FileRegistry(tmp_path, lease=30.0, poll_interval=0.05) as pub,
        FileRegistry(tmp_path, poll_interval=0.05) as sub,
        sub.watch(EP.service) as snaps,
    ):
        await pub.publish(EP)
        first = await next_snapshot(snaps)
        while not first:
            first = await next_snapshot(snaps)
        assert first.withdrawn == frozenset() and first.lease == 10.0
        await pub.unpublish(EP)
        gone = await next_snapshot(snaps)
        assert gone == frozenset() and gone.withdrawn == {EP.key}
        mark = json.loads(next((tmp_path / "services").rglob("*.withdrawn")).read_text())
        assert mark["key"] == EP.key and mark["expires"] == pytest.approx(time.time() + 30, abs=5)
        await pub.publish(EP)
        back = await next_snapshot(snaps)
        assert back == {EP} and back.withdrawn == frozenset()
        assert not list((tmp_path / "services").rglob("*.withdrawn"))


async def test_a_deleted_or_dead_entry_leaves_no_mark(tmp_path: Path) -> None:
    async with FileRegistry(tmp_path, poll_interval=0.05) as reg, reg.watch(EP.service) as snaps:
        await reg.publish(EP)
        while not await next_snapshot(snaps):
            pass
        next((tmp_path / "services").rglob("*.json")).unlink()  # by hand, not by the owner
        gone = await next_snapshot(snaps)
        assert gone == frozenset() and gone.withdrawn == frozenset()


async def test_an_expired_mark_is_dropped(tmp_path: Path) -> None:
    async with FileRegistry(tmp_path) as reg:
        await reg.publish(EP)
        await reg.unpublish(EP)
        path = next((tmp_path / "services").rglob("*.withdrawn"))
        path.write_text(json.dumps({"key": EP.key, "expires": time.time() - 1}))
        async with reg.watch(EP.service) as snaps:
            assert (await next_snapshot(snaps)).withdrawn == frozenset()
        assert not path.exists()


async def test_writes_of_one_entry_at_once_all_succeed(tmp_path: Path) -> None:
    # A lease renewal and a publish of the same endpoint run in worker threads at the same
    # time; each must land whole (they once shared a temporary name and one lost its file).
    big = Endpoint(EP.service, EP.host, EP.port, tags={f"t{i:05d}" * 40 for i in range(3000)})
    async with FileRegistry(tmp_path, poll_interval=60, lease=600) as reg:
        async with anyio.create_task_group() as tg:
            for _ in range(16):
                tg.start_soon(reg.publish, big)
        entry = json.loads(reg._path(big).read_text())
        assert entry["endpoint"] == big.to_dict()
        assert not list(reg._dir(big.service).glob(".*.tmp"))
