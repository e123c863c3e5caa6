"""Eureka's and Nacos's default leases on a fake clock, and listings, against a recording mesh."""

from __future__ import annotations

import json
from typing import Any

import pytest
from recording_mesh import RecordingMesh

from sofamesh.clock import FakeClock
from sofamesh.codecs.http1 import HttpRequest
from sofamesh.config import Address
from sofamesh.endpoint import Endpoint
from sofamesh.sidecar.registry_apis.book import Book
from sofamesh.sidecar.registry_apis.eureka import EurekaApi
from sofamesh.sidecar.registry_apis.nacos import NacosApi

pytestmark = pytest.mark.anyio


async def _sweep(api: Any, book: Book, clock: FakeClock) -> None:
    await api.tick(clock.now())
    for inst in book.lapsed(clock.now()):
        await api.lapse(inst)


async def test_eureka_evicts_90_s_after_the_last_renewal() -> None:
    mesh, book, clock = RecordingMesh(), Book(8), FakeClock()
    api = EurekaApi(mesh, book, clock, 90.0)  # type: ignore[arg-type]
    doc = {"instance": {"instanceId": "o-1", "app": "ORDERS", "port": {"$": 9000}}}
    reg = HttpRequest("POST", "/eureka/apps/ORDERS", [], json.dumps(doc).encode())
    assert (await api(reg)).status == 204
    assert mesh.published["orders"].upstream == Address("127.0.0.1", 9000)
    clock.advance(80)
    assert (await api(HttpRequest("PUT", "/eureka/apps/ORDERS/o-1"))).status == 200
    clock.advance(89)
    await _sweep(api, book, clock)
    assert "orders" in mesh.published
    clock.advance(2)
    await _sweep(api, book, clock)
    assert "orders" not in mesh.published
    assert (await api(HttpRequest("PUT", "/eureka/apps/ORDERS/o-1"))).status == 404


async def test_eureka_status_override_takes_it_out_of_the_mesh_and_back() -> None:
    mesh, book, clock = RecordingMesh(), Book(8), FakeClock()
    api = EurekaApi(mesh, book, clock, 90.0)  # type: ignore[arg-type]
    doc = {"instance": {"instanceId": "o-1", "app": "ORDERS", "port": {"$": 9000}}}
    await api(HttpRequest("POST", "/eureka/apps/ORDERS", [], json.dumps(doc).encode()))
    out = "/eureka/apps/ORDERS/o-1/status?value=OUT_OF_SERVICE"
    assert (await api(HttpRequest("PUT", out))).status == 200
    assert "orders" not in mesh.published
    listed = await api(
        HttpRequest("GET", "/eureka/apps/ORDERS/o-1", [(b"accept", b"application/json")])
    )
    assert json.loads(listed.body)["instance"]["status"] == "OUT_OF_SERVICE"
    assert (await api(HttpRequest("DELETE", "/eureka/apps/ORDERS/o-1/status"))).status == 200
    assert "orders" in mesh.published


async def test_nacos_unhealthy_after_15_s_without_beats_and_deleted_after_30() -> None:
    mesh, book, clock = RecordingMesh(), Book(8), FakeClock()
    api = NacosApi(mesh, book, clock, 15.0, 30.0)  # type: ignore[arg-type]
    q = "serviceName=stock&ip=127.0.0.1&port=9100"
    assert (await api(HttpRequest("POST", f"/nacos/v1/ns/instance?{q}"))).body == b"ok"
    beat = json.dumps({"serviceName": "DEFAULT_GROUP@@stock", "ip": "127.0.0.1", "port": 9100})
    clock.advance(10)
    answer = await api(HttpRequest("PUT", "/nacos/v1/ns/instance/beat", [], _form(beat)))
    assert json.loads(answer.body)["code"] == 10200
    clock.advance(14)
    await _sweep(api, book, clock)
    assert "stock" in mesh.published
    clock.advance(2)
    await _sweep(api, book, clock)
    assert "stock" not in mesh.published
    listed = await api(HttpRequest("GET", "/nacos/v1/ns/instance/list?serviceName=stock"))
    assert [h["healthy"] for h in json.loads(listed.body)["hosts"]] == [False]
    clock.advance(15)
    await _sweep(api, book, clock)
    listed = await api(HttpRequest("GET", "/nacos/v1/ns/instance/list?serviceName=stock"))
    assert json.loads(listed.body)["hosts"] == []
    answer = await api(HttpRequest("PUT", "/nacos/v1/ns/instance/beat", [], _form(beat)))
    assert json.loads(answer.body)["code"] == 20404  # the client registers again


def _form(beat: str) -> bytes:
    from urllib.parse import urlencode

    return urlencode({"serviceName": "DEFAULT_GROUP@@stock", "beat": beat}).encode()


async def test_mesh_endpoints_are_distinct_eureka_instances_at_the_local_port() -> None:
    eps = (
        Endpoint("orders", "10.0.0.1", 8080, version="2.0", zone="z1"),
        Endpoint("orders", "10.0.0.2", 8080, meta={"instance_id": "o-2"}),
    )
    api = EurekaApi(RecordingMesh(eps), Book(8), FakeClock(), 90.0)  # type: ignore[arg-type]
    answer = await api(HttpRequest("GET", "/eureka/apps/ORDERS", [(b"accept", b"json")]))
    instances = json.loads(answer.body)["application"]["instance"]
    assert [i["instanceId"] for i in instances] == ["10.0.0.1:orders:8080", "o-2"]
    assert {(i["ipAddr"], i["port"]["$"]) for i in instances} == {("127.0.0.1", 15001)}
    assert instances[0]["metadata"] == {"version": "2.0", "zone": "z1"}
