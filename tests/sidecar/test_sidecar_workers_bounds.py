"""`workers: 2` at its bounds: large rules documents, hung workers, connection counts.

Real processes on the test's backend, as in test_sidecar_workers.py (whose helpers
these tests share).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import attrs
import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families as classic
from tests.e2e.test_upgrade import SERVICE, wait_for
from tests.sidecar.test_sidecar_workers import (
    OTHER,
    START_TIMEOUT,
    call,
    sidecar,
    until_both_serve,
)

from sofamesh.endpoint import Endpoint
from sofamesh.registry import open_registry

pytestmark = pytest.mark.anyio

MIB = 1 << 20
ABORT = {"service": SERVICE, "direction": "inbound", "abort": {"code": 503}}


async def stats(ready: dict[str, Any]) -> dict[str, Any]:
    """`/stats`, waiting while the main process reads a rules file of megabytes."""
    async with httpx.AsyncClient(timeout=60) as client:
        result: dict[str, Any] = (await client.get(f"http://{ready['admin']}/stats")).json()
    return result


def padded(version: str, size: int, *faults: dict[str, Any]) -> dict[str, Any]:
    """A valid rules document of about `size` bytes: a fault for another service whose
    name pads it (cheap to parse, unlike thousands of rules)."""
    pad = {"service": "com.example.Pad", "direction": "inbound", "abort": {"code": 503}}
    return {"version": version, "faults": [*faults, {**pad, "name": "x" * size}]}


def write_rules(path: Path, document: dict[str, Any]) -> None:
    """Atomically, as the rules file's readers expect (JSON is YAML, and quicker to read)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document))
    tmp.replace(path)


async def answers_in_a_row(address: str, status: int, answers: list[int]) -> bool:
    """Each call on a new connection, hashed to either worker: 20 alike in a row cannot
    all come from one worker while the other answers otherwise."""
    answers.append(await call(address, SERVICE))
    return answers[-20:] == [status] * 20


async def test_a_rules_document_over_a_mebibyte_applies_in_every_worker_and_a_too_large_one_in_none(
    tmp_path: Path, anyio_backend: str
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"version": "none"}))
    more = {"rules_file": str(rules), "rules_last_good": str(tmp_path / "last-good.json")}
    async with sidecar(tmp_path, anyio_backend, **more) as (_procs, ready, _app):
        inbound = ready["inbound[0]"]
        pids = [w["pid"] for w in (await stats(ready))["workers"]]
        write_rules(rules, padded("big", 2 * MIB, ABORT))
        aborted: list[int] = []
        await wait_for(lambda: answers_in_a_row(inbound, 503, aborted), timeout=60)
        snapshot = await stats(ready)
        assert snapshot["governance"]["version"] == "big"
        assert [w["pid"] for w in snapshot["workers"]] == pids  # none died on the way
        assert [w["restarts"] for w in snapshot["workers"]] == [0, 0]
        # Over what a worker takes: refused whole, here as in the workers (fail closed).
        write_rules(rules, padded("huge", 5 * MIB))

        async def refused() -> bool:
            return (await stats(ready))["governance"]["rejected"] == 1

        await wait_for(refused, timeout=60)
        governance = (await stats(ready))["governance"]
        assert governance["version"] == "big"
        assert "cannot go to the workers" in governance["last_error"]
        still: list[int] = []
        await wait_for(lambda: answers_in_a_row(inbound, 503, still), timeout=60)
        assert [w["pid"] for w in (await stats(ready))["workers"]] == pids
        # A worker started again starts on the rules in force: the 2 MiB document.
        os.kill(pids[0], signal.SIGKILL)

        async def replaced() -> bool:
            workers = (await stats(ready))["workers"]
            return len(workers) == 2 and pids[0] not in {w["pid"] for w in workers}

        await wait_for(replaced, timeout=START_TIMEOUT)
        after: list[int] = []
        await wait_for(lambda: answers_in_a_row(inbound, 503, after), timeout=60)
    log = (tmp_path / "sidecar.log").read_text()
    assert "rules rejected, big stays in force" in log, log


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))


async def test_a_stopped_worker_is_killed_and_replaced_and_the_port_keeps_serving(
    tmp_path: Path, anyio_backend: str
) -> None:
    token_file = tmp_path / "token"
    more = {
        "worker_liveness_timeout": 5,  # a loaded machine answers well within it
        "local_api": {"token_file": str(token_file), "services": ["com.example.*"]},
    }
    async with (
        sidecar(tmp_path, anyio_backend, **more) as (procs, ready, app_port),
        httpx.AsyncClient() as client,
    ):
        main = procs.running["sidecar"][0].pid
        before = (await stats(ready))["workers"]
        victim = before[0]["pid"]
        rss = rss_kib(main)
        os.kill(victim, signal.SIGSTOP)
        try:
            # Messages for the stopped worker pile up while it cannot read them.
            auth = {"authorization": f"Bearer {token_file.read_text().strip()}"}
            for i in range(50):
                body = {"service": f"com.example.S{i}", "upstream": f"127.0.0.1:{app_port}"}
                r = await client.post(
                    f"http://{ready['admin']}/api/v1/publish", json=body, headers=auth
                )
                assert r.status_code == 200, r.text
            statuses: list[int] = []

            async def replaced() -> bool:
                statuses.append(await call(ready["inbound[0]"], SERVICE))
                workers = (await stats(ready))["workers"]
                return len(workers) == 2 and victim not in {w["pid"] for w in workers}

            await wait_for(replaced, timeout=START_TIMEOUT)
        finally:
            with contextlib.suppress(ProcessLookupError):  # if still there: let it go on
                os.kill(victim, signal.SIGCONT)
        assert set(statuses) == {200}
        workers = (await stats(ready))["workers"]
        assert [w["restarts"] for w in workers] == [1, 0]
        assert workers[1]["pid"] == before[1]["pid"]
        assert rss_kib(main) - rss < 64 * 1024  # what it queued for the dead worker is gone
    log = (tmp_path / "sidecar.log").read_text()
    assert f"pid {victim}) is hung (no answer to a liveness ping in 5 s): killed" in log, log


async def test_a_worker_that_reads_nothing_while_its_queue_fills_is_killed_and_replaced(
    tmp_path: Path, anyio_backend: str
) -> None:
    more = {"worker_liveness_timeout": 600}  # the queue, not the ping, finds it here
    async with (
        sidecar(tmp_path, anyio_backend, **more) as (procs, ready, app_port),
        # A long lease: no renewal rewrites the entry while the test does.
        open_registry(f"file://{tmp_path}/reg?poll=0.05&lease=600") as registry,
    ):
        main = procs.running["sidecar"][0].pid
        other = Endpoint(service=OTHER, host="127.0.0.1", port=app_port, app="other")
        await registry.publish(other)
        await until_both_serve(ready["outbound[0]"], OTHER, ready)  # both follow OTHER
        victim = (await stats(ready))["workers"][0]["pid"]
        rss = rss_kib(main)
        log = tmp_path / "sidecar.log"
        os.kill(victim, signal.SIGSTOP)
        versions = iter(range(1000))

        async def given_up() -> bool:
            # Snapshots of 3 MiB each (under the link's cap), a new one on every poll.
            pad = f"{next(versions)}".ljust(3 * MIB, "x")
            await registry.publish(attrs.evolve(other, meta={"pad": pad}))
            return "reads nothing" in log.read_text()

        try:
            await wait_for(given_up, timeout=120)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGCONT)
        # Bounded: 8 link caps of about 4 MiB at most were queued for the stopped worker.
        assert rss_kib(main) - rss < 96 * 1024
        assert f"pid {victim}) is hung (the other end reads nothing" in log.read_text()

        async def replaced() -> bool:
            workers = (await stats(ready))["workers"]
            return len(workers) == 2 and victim not in {w["pid"] for w in workers}

        await wait_for(replaced, timeout=START_TIMEOUT)
        assert await call(ready["outbound[0]"], OTHER) == 200
        assert [w["restarts"] for w in (await stats(ready))["workers"]] == [1, 0]


async def test_connections_open_on_every_worker_are_counted_at_the_one_admin_api(
    tmp_path: Path, anyio_backend: str
) -> None:
    async with sidecar(tmp_path, anyio_backend) as (_procs, ready, app_port):
        host, port = ready["inbound[0]"].rsplit(":", 1)
        request = f"GET / HTTP/1.1\r\nhost: {SERVICE}\r\n\r\n".encode()
        held: list[anyio.abc.SocketStream] = []
        try:
            with anyio.fail_after(60):  # keep-alive connections until both workers hold some
                while len(held) < 4 or not all(w["rq_total"] for w in await workers(ready)):
                    conn = await anyio.connect_tcp(host, int(port))
                    held.append(conn)
                    await conn.send(request)
                    assert b" 200 " in await conn.receive()
            snapshot = await stats(ready)
            async with httpx.AsyncClient() as client:
                prom = (await client.get(f"http://{ready['admin']}/stats/prometheus")).text
        finally:
            for conn in held:
                await conn.aclose()
    rows = {r["name"]: r for r in snapshot["listeners"]}
    assert set(rows) == {"inbound[0]", "outbound[0]"}
    assert rows["inbound[0]"]["downstream_cx_active"] == len(held)
    assert rows["inbound[0]"]["downstream_cx_total"] >= len(held)
    assert rows["inbound[0]"]["downstream_cx_overflow"] == 0
    # Each worker's pool to the app: at least one connection each, never more than calls.
    app = {u["address"]: u for u in snapshot["upstream_connections"]}[f"127.0.0.1:{app_port}"]
    assert 2 <= app["upstream_cx_active"] <= len(held)
    families = {f.name: f for f in classic(prom)}
    active = families["sofamesh_listener_downstream_cx_active"].samples
    assert {s.labels["listener"]: s.value for s in active}["inbound[0]"] == len(held)
    upstream = families["sofamesh_upstream_cx_active"].samples
    assert [s.value for s in upstream] == [app["upstream_cx_active"]]


async def workers(ready: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (await stats(ready))["workers"]
    return rows
