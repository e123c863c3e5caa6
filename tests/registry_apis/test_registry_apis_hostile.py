"""Hostile requests to the Eureka, Consul and Nacos APIs: always a 4xx, never a 500.

Property tests drive each API's handler with registrations whose fields hold any
JSON value (wrong types, huge numbers, nesting, missing fields); the last test
sends the worst of them to a real sidecar, which answers each with a 4xx and
then serves a good registration. `scripts/fuzz.py` runs the same handlers for
a million mutated inputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recording_mesh import RecordingMesh
from tests.hostile_json import json_values

from sofamesh.clock import FakeClock
from sofamesh.codecs.http1 import HttpRequest
from sofamesh.config.model import LocalApiConfig
from sofamesh.demo.procs import Procs
from sofamesh.sidecar.registry_apis.book import Book
from sofamesh.sidecar.registry_apis.consul import ConsulApi
from sofamesh.sidecar.registry_apis.eureka import EurekaApi
from sofamesh.sidecar.registry_apis.nacos import NacosApi

pytestmark = pytest.mark.anyio

VALUES = json_values(text_size=20, max_leaves=8)
HOSTILE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DEEP = b"[" * 50_000 + b"]" * 50_000


def _docs(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Registrations with any subset of `keys`, each holding any JSON value."""
    return st.fixed_dictionaries({}, optional={k: VALUES for k in keys})


def _consul() -> ConsulApi:
    mesh, tg = RecordingMesh(), type("TG", (), {"start_soon": lambda self, *a: None})()
    mesh.sidecar.config.app = "shop"
    mesh.sidecar.config.local_api = LocalApiConfig()
    return ConsulApi(mesh, Book(8), FakeClock(), tg)  # type: ignore[arg-type]


async def _status(api: Any, method: str, target: str, body: bytes = b"", ctype: str = "") -> int:
    headers = [(b"content-type", ctype.encode())] if ctype else []
    response = await api(HttpRequest(method, target, headers, body))
    assert response.status < 500, response.body
    return int(response.status)


@HOSTILE
@given(_docs(["instanceId", "hostName", "ipAddr", "port", "status", "leaseInfo", "metadata"]))
async def test_eureka_registrations_of_any_shape_get_a_clear_answer(doc: dict[str, Any]) -> None:
    api = EurekaApi(RecordingMesh(), Book(8), FakeClock(), None)  # type: ignore[arg-type]
    body = json.dumps({"instance": doc}).encode()
    assert await _status(api, "POST", "/eureka/apps/ORDERS", body, "application/json") in (204, 400)


@HOSTILE
@given(_docs(["ID", "Name", "Address", "Port", "Meta", "Tags", "Check", "Checks"]))
async def test_consul_registrations_of_any_shape_get_a_clear_answer(doc: dict[str, Any]) -> None:
    body = json.dumps(doc).encode()
    assert await _status(_consul(), "PUT", "/v1/agent/service/register", body) in (200, 400, 403)


@HOSTILE
@given(st.dictionaries(st.sampled_from(["serviceName", "ip", "port", "weight", "metadata", "beat",
                                        "enabled", "pageNo", "pageSize"]), VALUES))  # fmt: skip
async def test_nacos_forms_of_any_shape_get_a_clear_answer(form: dict[str, Any]) -> None:
    api = NacosApi(RecordingMesh(), Book(8), FakeClock(), None, 30.0)  # type: ignore[arg-type]
    body = urlencode({k: v if isinstance(v, str) else json.dumps(v) for k, v in form.items()})
    for method, path in (("POST", ""), ("PUT", "/beat"), ("PUT", ""), ("DELETE", "")):
        await _status(api, method, f"/nacos/v1/ns/instance{path}", body.encode())
    await _status(api, "GET", f"/nacos/v1/ns/service/list?{body}")


async def test_deep_json_and_xml_are_refused_by_the_limit() -> None:
    eureka = EurekaApi(RecordingMesh(), Book(8), FakeClock(), None)  # type: ignore[arg-type]
    deep_xml = b"<instance>" + b"<a>" * 100 + b"</a>" * 100 + b"</instance>"
    for body in (DEEP, b'{"instance": ' + DEEP + b"}", deep_xml):
        answer = await eureka(HttpRequest("POST", "/eureka/apps/X", [], body))
        assert answer.status == 400 and b"nests" in answer.body
    bomb = b'<!DOCTYPE i [<!ENTITY a "aaaa">]><instance><hostName>&a;</hostName></instance>'
    assert await _status(eureka, "POST", "/eureka/apps/X", bomb, "application/xml") == 400
    assert await _status(_consul(), "PUT", "/v1/agent/service/register", DEEP) == 400
    nacos = NacosApi(RecordingMesh(), Book(8), FakeClock(), None, 30.0)  # type: ignore[arg-type]
    form = urlencode({"serviceName": "s", "ip": "127.0.0.1", "port": "1", "metadata": DEEP})
    assert await _status(nacos, "POST", "/nacos/v1/ns/instance", form.encode()) == 400


async def test_a_full_book_is_a_429() -> None:
    api = EurekaApi(RecordingMesh(), Book(1), FakeClock(), None)  # type: ignore[arg-type]
    for n, status in ((1, 204), (2, 429)):
        body = json.dumps({"instance": {"instanceId": f"i-{n}", "port": 9000}}).encode()
        assert await _status(api, "POST", "/eureka/apps/ORDERS", body) == status


async def test_a_real_sidecar_answers_hostile_requests_and_keeps_serving(
    tmp_path: Path, anyio_backend: str
) -> None:
    apis = {name: {"listen": "127.0.0.1:0"} for name in ("eureka", "consul", "nacos")}
    async with Procs(tmp_path, anyio_backend) as procs:
        sidecar = await procs.sidecar("shop", {
            "app": "shop", "registry": f"file://{tmp_path}/registry",
            "inbound": [{"protocol": "http", "listen": "127.0.0.1:0"}],
            "local_api": {"services": ["*"]},
            "registry_apis": {**apis, "max_body_bytes": 4096, "max_json_depth": 8},
        })  # fmt: skip
        eureka = f"http://{sidecar['registry_apis.eureka']}/eureka/apps/SHOP"
        consul = f"http://{sidecar['registry_apis.consul']}/v1/agent/service/register"
        nacos = f"http://{sidecar['registry_apis.nacos']}/nacos/v1/ns/instance"
        nine_deep = b'{"Name": "shop", "Meta": ' + b"[" * 9 + b"]" * 9 + b"}"
        async with httpx.AsyncClient(timeout=10) as http:
            for url in (eureka, consul, nacos):
                assert (await http.post(url, content=b"x" * 5000)).status_code == 413
            assert (await http.put(consul, content=nine_deep)).status_code == 400
            assert (
                await http.put(consul, content=b'{"Name": "shop", "Port": {}}')
            ).status_code == 400
            assert (await http.post(eureka, json={"instance": {"port": [1]}})).status_code == 400
            form = {"serviceName": "shop", "ip": "127.0.0.1", "port": "x"}
            assert (await http.post(nacos, data=form)).status_code == 400
            good = {"instance": {"instanceId": "s-1", "hostName": "h", "port": {"$": 8080}}}
            assert (await http.post(eureka, json=good)).status_code == 204
