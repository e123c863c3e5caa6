"""`workers: 2`: one main process and two workers serving the same ports (sidecar/supervisor.py).

Real processes on the test's backend: the sidecar, a plain HTTP app in the test's loop,
and the file registry the test also publishes into. Every request the test sends is
counted at the one admin API, whichever worker served it.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml
from tests.e2e.test_upgrade import SERVICE, upstream, wait_for

from sofamesh.demo.procs import Procs
from sofamesh.endpoint import Endpoint
from sofamesh.registry import open_registry

pytestmark = pytest.mark.anyio

OTHER = "com.example.Other"  # called through the outbound listener
START_TIMEOUT = 90.0  # seconds: three interpreters start on a shared, loaded machine


def config(tmp_path: Path, app_port: int) -> dict[str, Any]:
    return {
        "app": "echo",
        "registry": f"file://{tmp_path}/reg?poll=0.05",
        "admin": "127.0.0.1:0",
        "upgrade_socket": str(tmp_path / "upgrade.sock"),
        "workers": 2,
        "drain_timeout": 5,
        "inbound": [
            {
                "protocol": "http",
                "listen": "127.0.0.1:0",
                "upstream": f"127.0.0.1:{app_port}",
                "services": [SERVICE],
            }
        ],
        "outbound": [{"protocol": "http", "listen": "127.0.0.1:0"}],
    }


@asynccontextmanager
async def sidecar(
    tmp_path: Path, backend: str, **more: Any
) -> AsyncIterator[tuple[Procs, dict[str, Any], int]]:
    """Procs, the READY addresses and the app's port, with `workers: 2` (and `more` keys)."""
    async with upstream() as app_port, Procs(tmp_path, backend) as procs:
        path = tmp_path / "sidecar.yaml"
        path.write_text(yaml.safe_dump({**config(tmp_path, app_port), **more}))
        argv = [sys.executable, "-m", "sofamesh.sidecar", "-c", str(path), "--backend", backend]
        ready = await procs.start("sidecar", argv, timeout=START_TIMEOUT)
        yield procs, ready, app_port


async def call(address: str, service: str) -> int:
    """One request on a connection of its own (so the kernel picks a worker for each).

    A connection queued for a worker being restarted waits for it: a long timeout."""
    async with httpx.AsyncClient(timeout=START_TIMEOUT) as client:
        resp = await client.get(f"http://{address}/", headers={"host": service})
    return resp.status_code


async def stats(ready: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        result: dict[str, Any] = (await client.get(f"http://{ready['admin']}/stats")).json()
    return result


def served(snapshot: dict[str, Any], direction: str, service: str) -> int:
    return sum(
        s["rq_total"]
        for s in snapshot["services"]
        if s["direction"] == direction and s["service"] == service
    )


async def until_both_serve(address: str, service: str, ready: dict[str, Any]) -> int:
    """Send calls until each worker has served some; how many were sent (all answered 200)."""
    sent = 0
    with anyio.fail_after(60):
        while True:
            for _ in range(10):
                assert await call(address, service) == 200
                sent += 1
            workers = (await stats(ready))["workers"]
            if len(workers) == 2 and all(w["rq_total"] for w in workers):
                return sent


def alive(pid: int) -> bool:
    """Whether `pid` runs (an exited orphan nobody reaped yet is a zombie: not running)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_both_workers_serve_one_port_and_the_admin_sums_them(
    tmp_path: Path, anyio_backend: str
) -> None:
    async with sidecar(tmp_path, anyio_backend) as (procs, ready, _app):
        sent = await until_both_serve(ready["inbound[0]"], SERVICE, ready)
        snapshot = await stats(ready)
        workers = snapshot["workers"]
        assert {w["worker"] for w in workers} == {0, 1}
        main = procs.running["sidecar"][0].pid
        assert len({w["pid"] for w in workers} - {main}) == 2
        assert served(snapshot, "inbound", SERVICE) == sent
        assert sum(w["rq_total"] for w in workers) == sent
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://{ready['admin']}/stats/prometheus")).text
        line = f'sofamesh_rq_total{{direction="inbound",service="{SERVICE}",caller=""'
        assert f'{line},status="ok",response_code="200"}} {sent}' in text


async def test_an_endpoint_added_in_the_registry_reaches_both_workers(
    tmp_path: Path, anyio_backend: str
) -> None:
    async with (
        sidecar(tmp_path, anyio_backend) as (_procs, ready, app_port),
        open_registry(f"file://{tmp_path}/reg?poll=0.05") as registry,
    ):
        first = Endpoint(service=OTHER, host="127.0.0.1", port=app_port, app="other")
        await registry.publish(first)
        await until_both_serve(ready["outbound[0]"], OTHER, ready)
        # One watch in the main process for the service, whatever the workers.
        assert (await stats(ready))["worker_watches"] == [OTHER]
        async with upstream() as second_port:
            second = Endpoint(service=OTHER, host="127.0.0.1", port=second_port, app="other")
            await registry.publish(second)

            async def both_know_it() -> bool:
                async with httpx.AsyncClient() as client:
                    clusters = (await client.get(f"http://{ready['admin']}/clusters")).json()
                rows = [c for c in clusters["clusters"] if c["service"] == OTHER]
                found = [e for r in rows for e in r["endpoints"] if e["port"] == second_port]
                return bool(found) and found[0]["health_by_worker"] == ["healthy"] * 2

            await wait_for(both_know_it)


async def test_a_killed_worker_is_replaced_and_the_port_keeps_serving(
    tmp_path: Path, anyio_backend: str
) -> None:
    async with sidecar(tmp_path, anyio_backend) as (_procs, ready, _app):
        before = (await stats(ready))["workers"]
        victim = before[0]["pid"]
        os.kill(victim, signal.SIGKILL)
        statuses = []

        async def replaced() -> bool:
            statuses.append(await call(ready["inbound[0]"], SERVICE))
            workers = (await stats(ready))["workers"]
            return len(workers) == 2 and victim not in {w["pid"] for w in workers}

        await wait_for(replaced, timeout=START_TIMEOUT)
        assert set(statuses) == {200}
        workers = (await stats(ready))["workers"]
        assert [w["restarts"] for w in workers] == [1, 0]
        assert workers[1]["pid"] == before[1]["pid"]


async def test_sigterm_drains_every_worker_and_leaves_no_process(
    tmp_path: Path, anyio_backend: str
) -> None:
    async with sidecar(tmp_path, anyio_backend) as (procs, ready, _app):
        pids = [w["pid"] for w in (await stats(ready))["workers"]]
        assert all(alive(pid) for pid in pids)
        process, _ = procs.running["sidecar"]
        procs.stop("sidecar")
        with anyio.fail_after(30):
            assert await process.wait() == 0
        assert not any(alive(pid) for pid in pids)
        log = (tmp_path / "sidecar.log").read_text()
        assert log.count("drained") == 3, log  # the main process and each worker


async def test_an_upgrade_hands_every_workers_socket_to_the_new_process(
    tmp_path: Path, anyio_backend: str
) -> None:
    async with sidecar(tmp_path, anyio_backend) as (procs, ready, _app):
        old_main = procs.running["sidecar"][0]
        old_pids = [w["pid"] for w in (await stats(ready))["workers"]]
        path = tmp_path / "sidecar.yaml"
        argv = [sys.executable, "-m", "sofamesh.sidecar", "-c", str(path)]
        argv += ["--backend", anyio_backend, "--upgrade"]
        new = await procs.start("sidecar-new", argv, timeout=START_TIMEOUT)
        assert new["inbound[0]"] == ready["inbound[0]"] and new["admin"] == ready["admin"]
        with anyio.fail_after(30):
            assert await old_main.wait() == 0
        assert not any(alive(pid) for pid in old_pids)
        sent = await until_both_serve(ready["inbound[0]"], SERVICE, new)
        workers = (await stats(new))["workers"]
        assert sum(w["rq_total"] for w in workers) == sent
        assert not {w["pid"] for w in workers} & set(old_pids)
        log = (tmp_path / "sidecar-new.log").read_text()
        assert "without SO_REUSEPORT" not in log  # each new worker has a socket of its own


async def test_a_rules_change_reaches_every_worker(tmp_path: Path, anyio_backend: str) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"version": "none"}))
    more = {"rules_file": str(rules), "rules_last_good": str(tmp_path / "last-good.json")}
    async with sidecar(tmp_path, anyio_backend, **more) as (_procs, ready, _app):
        await until_both_serve(ready["inbound[0]"], SERVICE, ready)
        abort = {"service": SERVICE, "direction": "inbound", "abort": {"code": 503}}
        rules.write_text(yaml.safe_dump({"version": "abort", "faults": [abort]}))
        answers: list[int] = []

        async def every_worker_aborts() -> bool:
            # Each call on a new connection, hashed to either worker: 20 aborted in a row
            # cannot all come from one worker while the other still lets calls through.
            answers.append(await call(ready["inbound[0]"], SERVICE))
            return answers[-20:] == [503] * 20

        await wait_for(every_worker_aborts, timeout=60)
        workers = (await stats(ready))["workers"]
        assert all(w["rq_total"] > 0 for w in workers)


async def test_workers_drain_and_exit_when_the_main_process_dies(
    tmp_path: Path, anyio_backend: str
) -> None:
    async with sidecar(tmp_path, anyio_backend) as (procs, ready, _app):
        pids = [w["pid"] for w in (await stats(ready))["workers"]]
        procs.kill("sidecar")

        async def gone() -> bool:
            return not any(alive(pid) for pid in pids)

        await wait_for(gone, timeout=30)
        log = (tmp_path / "sidecar.log").read_text()
        assert log.count("the main process is gone: draining") == 2, log


async def test_a_local_api_registration_routes_in_every_worker(
    tmp_path: Path, anyio_backend: str
) -> None:
    late = "com.example.Late"
    token_file = tmp_path / "token"
    more = {"local_api": {"token_file": str(token_file), "services": [late]}}
    async with (
        sidecar(tmp_path, anyio_backend, **more) as (_procs, ready, _app),
        upstream() as late_port,
        httpx.AsyncClient() as client,
    ):
        inbound = ready["inbound[0]"]
        assert await call(inbound, late) != 200  # nobody serves it yet
        auth = {"authorization": f"Bearer {token_file.read_text().strip()}"}
        body = {"service": late, "upstream": f"127.0.0.1:{late_port}", "lease": 60}
        r = await client.post(f"http://{ready['admin']}/api/v1/publish", json=body, headers=auth)
        assert r.status_code == 200, r.text
        routed: list[int] = []

        async def every_worker_routes() -> bool:
            # 20 in a row, each on a new connection hashed to either worker, all routed.
            routed.append(await call(inbound, late))
            return routed[-20:] == [200] * 20

        await wait_for(every_worker_routes)
        body = {"service": late}
        r = await client.post(f"http://{ready['admin']}/api/v1/unpublish", json=body, headers=auth)
        assert r.json() == {"unpublished": True}
        answers: list[int] = []

        async def every_worker_refuses() -> bool:
            answers.append(await call(inbound, late))
            return len(answers) >= 20 and 200 not in answers[-20:]

        await wait_for(every_worker_refuses)
