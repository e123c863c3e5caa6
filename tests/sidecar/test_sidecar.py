"""The sidecar in-process: admin API, local API, mesh errors, bad input; on asyncio and trio."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest

from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.config import load_config
from sofamesh.endpoint import Endpoint
from sofamesh.protocols.http.server import Http1Server
from sofamesh.registry import FileRegistry
from sofamesh.sidecar import Sidecar

pytestmark = pytest.mark.anyio

JSON = {"content-type": "application/json"}  # every admin POST says so (CSRF defence)


def auth(sc: Sidecar) -> dict[str, str]:
    """The local API's header, with the token the sidecar wrote to its file."""
    return {"authorization": f"Bearer {sc.token}"}


@asynccontextmanager
async def upstream_app(
    handler: Any = None,
) -> AsyncIterator[int]:
    async def echo(req: HttpRequest, _conn: object) -> HttpResponse:
        return HttpResponse(
            200, [(b"content-type", b"text/plain")], b"hello " + req.target.encode()
        )

    server = Http1Server(handler or echo)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve, listener)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()


@asynccontextmanager
async def sidecar(config: dict[str, Any]) -> AsyncIterator[Sidecar]:
    sc = Sidecar(load_config(config, env={}))
    async with anyio.create_task_group() as tg:
        await tg.start(sc.run)
        yield sc
        sc.stop()


def base(tmp: Path, upstream: int | None = None, **more: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "app": "orders",
        "registry": f"file://{tmp}/reg?poll=0.05",
        "admin": "127.0.0.1:0",
        "outbound": [{"protocol": "http", "listen": "127.0.0.1:0"}],
        "policy": {"timeout": 2},
        **more,
    }
    if upstream is not None:
        cfg["inbound"] = [
            {
                "protocol": "http",
                "listen": "127.0.0.1:0",
                "upstream": f"127.0.0.1:{upstream}",
                "services": ["com.example.Orders"],
            }
        ]
    return cfg


async def test_admin_endpoints(tmp_path: Path) -> None:
    async with upstream_app() as up, sidecar(base(tmp_path, up)) as sc, httpx.AsyncClient() as c:
        admin = f"http://{sc.bound['admin']}"
        out = f"http://{sc.bound['outbound[0]']}"
        assert (await c.get(f"{admin}/ready")).text == "LIVE\n"
        # a call through the outbound listener to our own inbound (published in the registry)
        r = await c.get(f"{out}/orders/7", headers={"host": "com.example.Orders"})
        assert r.status_code == 200 and r.text == "hello /orders/7"
        stats = (await c.get(f"{admin}/stats")).json()
        svc = {(s["direction"], s["service"]): s for s in stats["services"]}
        assert svc[("outbound", "com.example.Orders")]["rq_total"] == 1
        assert svc[("inbound", "com.example.Orders")]["rq_status"] == {"ok": 1}
        prom = (await c.get(f"{admin}/stats/prometheus")).text
        assert (
            'sofamesh_rq_total{direction="outbound",service="com.example.Orders",caller="",'
            'status="ok",response_code="200"} 1' in prom
        )
        assert (
            'sofamesh_rq_total{direction="inbound",service="com.example.Orders",caller="orders",'
            'status="ok",response_code="200"} 1' in prom
        )
        assert "sofamesh_rq_duration_seconds_bucket" in prom
        clusters = (await c.get(f"{admin}/clusters")).json()["clusters"]
        (orders,) = clusters
        assert orders["endpoints"][0]["address"] == str(sc.bound["inbound[0]"])
        assert orders["endpoints"][0]["health"] == "healthy"
        dump = (await c.get(f"{admin}/config_dump")).json()
        assert dump["config"]["app"] == "orders" and dump["bound"]["admin"] == str(
            sc.bound["admin"]
        )
        assert (await c.get(f"{admin}/nope")).status_code == 404
        assert (await c.get(f"{admin}/quitquitquit")).status_code == 405


async def test_healthcheck_fail_withdraws_and_ok_restores(tmp_path: Path) -> None:
    async with upstream_app() as up, sidecar(base(tmp_path, up)) as sc, httpx.AsyncClient() as c:
        admin = f"http://{sc.bound['admin']}"
        async with (
            FileRegistry(tmp_path / "reg", poll_interval=0.05) as reg,
            reg.watch("com.example.Orders") as snaps,
        ):
            assert len(await snaps.__anext__()) == 1
            await c.post(f"{admin}/healthcheck/fail", headers=JSON)
            assert (await c.get(f"{admin}/ready")).status_code == 503
            with anyio.fail_after(2):
                assert await snaps.__anext__() == frozenset()
            await c.post(f"{admin}/healthcheck/ok", headers=JSON)
            with anyio.fail_after(2):
                assert len(await snaps.__anext__()) == 1


async def test_no_endpoint_is_503_naming_the_service(tmp_path: Path) -> None:
    async with sidecar(base(tmp_path)) as sc, httpx.AsyncClient() as c:
        out = f"http://{sc.bound['outbound[0]']}"
        r = await c.get(f"{out}/x", headers={"x-sofamesh-service": "com.example.Missing"})
        assert r.status_code == 503
        assert r.headers["x-sofamesh-error"] == "no_endpoint"
        assert "com.example.Missing" in r.text and "no endpoints registered" in r.text
        r = await c.get(f"{out}/x", headers={"host": ""})
        assert r.status_code == 400 and "names no service" in r.text


@asynccontextmanager
async def half_answering_upstream() -> AsyncIterator[int]:
    """Reads a request, sends half a response, and hangs up."""

    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()
            await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()


async def test_upstream_dying_mid_response_is_502_and_others_carry_on(tmp_path: Path) -> None:
    async with half_answering_upstream() as bad, upstream_app() as good:
        cfg = base(tmp_path, bad)
        cfg["inbound"].append(
            {
                "protocol": "http",
                "listen": "127.0.0.1:0",
                "upstream": f"127.0.0.1:{good}",
                "services": ["com.example.Good"],
            }
        )
        async with sidecar(cfg) as sc, httpx.AsyncClient() as c:
            out = f"http://{sc.bound['outbound[0]']}"
            r = await c.post(f"{out}/pay", headers={"host": "com.example.Orders"}, content=b"x")
            assert r.status_code == 502 and r.headers["x-sofamesh-error"] == "upstream_reset"
            r = await c.get(f"{out}/fine", headers={"host": "com.example.Good"})
            assert r.status_code == 200 and r.text == "hello /fine"


@asynccontextmanager
async def hanging_up_upstream(seen: list[bytes]) -> AsyncIterator[int]:
    """Reads a request and hangs up without a word: an app killed while it served."""

    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            seen.append(await stream.receive())

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()


async def test_a_peer_whose_app_died_mid_call_is_retried_elsewhere_when_idempotent(
    tmp_path: Path,
) -> None:
    # Two sidecars publish the same service: one in front of an app that hangs up on
    # every request, one healthy. The peer hop answers 502 `upstream_reset`; the caller's
    # hop reads that as a reset of its own, so a GET goes to the other endpoint and a
    # POST (which the dead app may have acted on) is not repeated.
    seen: list[bytes] = []
    async with hanging_up_upstream(seen) as bad, upstream_app() as good:
        dying = {**base(tmp_path, bad), "app": "orders-dying"}
        del dying["outbound"]
        async with (
            sidecar(dying),
            sidecar(base(tmp_path, good)) as sc,
            httpx.AsyncClient() as c,
        ):
            out = f"http://{sc.bound['outbound[0]']}"
            for i in range(4):
                r = await c.get(f"{out}/orders/{i}", headers={"host": "com.example.Orders"})
                assert r.status_code == 200 and r.text == f"hello /orders/{i}"
            assert any(b"GET /orders/" in s for s in seen), seen  # the dead app was tried
            codes = set()
            for _ in range(4):
                r = await c.post(f"{out}/pay", headers={"host": "com.example.Orders"})
                codes.add(r.status_code)
                if r.status_code == 502:
                    assert r.headers["x-sofamesh-error"] == "upstream_reset"
            assert 502 in codes


async def test_malformed_and_oversized_requests(tmp_path: Path) -> None:
    cfg = base(tmp_path)
    cfg["outbound"][0]["limits"] = {"max_header_bytes": 1024}
    async with sidecar(cfg) as sc:
        host, port = str(sc.bound["outbound[0]"]).split(":")
        for raw, status in [
            (b"GARBAGE\r\n\r\n", b"400"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"y" * 2000 + b"\r\n\r\n", b"431"),
        ]:
            async with await anyio.connect_tcp(host, int(port)) as s:
                await s.send(raw)
                data = b""
                with anyio.fail_after(5):
                    try:
                        while True:
                            data += await s.receive()
                    except anyio.EndOfStream:
                        pass  # the sidecar closes the connection after the error
            assert data.split(b" ")[1] == status, data
        async with httpx.AsyncClient() as c:  # and it still serves everyone else
            r = await c.get(f"http://{sc.bound['admin']}/ready")
            assert r.status_code == 200


async def test_sdk_registration_through_the_local_api(tmp_path: Path) -> None:
    late = {"services": ["com.example.Late"]}
    async with (
        upstream_app() as up,
        sidecar(base(tmp_path, local_api=late)) as sc,
        httpx.AsyncClient() as c,
    ):
        admin = f"http://{sc.bound['admin']}"
        body = {"service": "com.example.Late", "upstream": f"127.0.0.1:{up}", "lease": 5}
        r = await c.post(f"{admin}/api/v1/publish", json=body, headers=auth(sc))
        assert r.status_code == 400 and "no inbound http listener" in r.text
    cfg = base(tmp_path, local_api={"services": ["com.example.L*"]})
    cfg["inbound"] = [{"protocol": "http", "listen": "127.0.0.1:0"}]
    async with upstream_app() as up, sidecar(cfg) as sc, httpx.AsyncClient() as c:
        admin = f"http://{sc.bound['admin']}"
        body = {"service": "com.example.Late", "upstream": f"127.0.0.1:{up}", "lease": 5}
        assert (
            await c.post(f"{admin}/api/v1/publish", json=body, headers=auth(sc))
        ).status_code == 200
        info = (await c.get(f"{admin}/api/v1/info", headers=auth(sc))).json()
        assert info["outbound"][0]["listen"] == str(sc.bound["outbound[0]"])
        out = f"http://{sc.bound['outbound[0]']}"
        r = await c.get(f"{out}/late", headers={"host": "com.example.Late"})
        assert r.text == "hello /late"
        r = await c.post(
            f"{admin}/api/v1/unpublish", json={"service": "com.example.Late"}, headers=auth(sc)
        )
        assert r.json() == {"unpublished": True}


async def test_stop_drains_and_unpublishes(tmp_path: Path) -> None:
    release = anyio.Event()
    started = anyio.Event()

    async def slow(req: HttpRequest, _conn: object) -> HttpResponse:
        started.set()
        await release.wait()
        return HttpResponse(200, [], b"finished")

    async with upstream_app(slow) as up, httpx.AsyncClient() as c:
        sc = Sidecar(load_config(base(tmp_path, up), env={}))
        result: dict[str, Any] = {}
        async with anyio.create_task_group() as tg:
            await tg.start(sc.run)
            out = f"http://{sc.bound['outbound[0]']}"

            async def call() -> None:
                r = await c.get(f"{out}/slow", headers={"host": "com.example.Orders"})
                result["status"], result["body"] = r.status_code, r.text

            tg.start_soon(call)
            await started.wait()
            sc.stop()
            async with FileRegistry(tmp_path / "reg", poll_interval=0.05) as reg:
                with anyio.fail_after(3):
                    while await reg.list_services():  # noqa: ASYNC110 - the registry is polled state
                        await anyio.sleep(0.02)
            assert sc.draining
            release.set()
        assert result == {"status": 200, "body": "finished"}
        assert not sc.ready


async def test_endpoint_published_with_metadata(tmp_path: Path) -> None:
    meta = {"version": "2.1", "zone": "gz-a", "weight": 50, "tags": ["canary"]}
    async with (
        upstream_app() as up,
        sidecar(base(tmp_path, up, metadata=meta)) as sc,
        FileRegistry(tmp_path / "reg") as reg,
        reg.watch("com.example.Orders") as snaps,
    ):
        (ep,) = await snaps.__anext__()
    assert isinstance(ep, Endpoint) and ep.app == "orders"
    assert (ep.version, ep.zone, ep.weight, ep.tags) == ("2.1", "gz-a", 50, frozenset({"canary"}))
    assert ep.address == str(sc.bound["inbound[0]"])


async def test_cancelling_a_sidecar_after_traffic_closes_cleanly(tmp_path: Path) -> None:
    async with upstream_app() as up, httpx.AsyncClient() as c:
        sc = Sidecar(load_config(base(tmp_path, up), env={}))
        async with anyio.create_task_group() as tg:
            await tg.start(sc.run)
            r = await c.get(
                f"http://{sc.bound['outbound[0]']}/x", headers={"host": "com.example.Orders"}
            )
            assert r.status_code == 200  # pooled upstream connections are now open
            tg.cancel_scope.cancel()  # cancellation, not stop(): everything must still unwind
