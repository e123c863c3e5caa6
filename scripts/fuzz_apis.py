"""Fuzz targets for the HTTP APIs that parse a peer's JSON: the sidecar's Eureka, Consul and
Nacos APIs and the Kubernetes admission webhook's AdmissionReview.

An input is a request: its first line `METHOD TARGET [CONTENT-TYPE]`, the rest its body. The
HTTP/1.1 codec is fuzzed on its own (`fuzz.py`), so these inputs go straight to the handler,
past the framing, where a registration's fields are read. A crash is an exception out of the
handler or an answer of 500 or more: bad input must get a 4xx and a log line.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

import anyio

from sofamesh.clock import FakeClock
from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.config import Address
from sofamesh.config.model import LocalApiConfig, MeshConfig, RegistryApisConfig
from sofamesh.deploy.review import answer
from sofamesh.deploy.settings import InjectSettings
from sofamesh.endpoint import Endpoint
from sofamesh.sidecar.registry_apis import BrowserGuard
from sofamesh.sidecar.registry_apis.book import Book, Instance
from sofamesh.sidecar.registry_apis.consul import ConsulApi
from sofamesh.sidecar.registry_apis.eureka import EurekaApi
from sofamesh.sidecar.registry_apis.mesh import MeshBridge
from sofamesh.sidecar.registry_apis.nacos import NacosApi


class ServerError(Exception):
    """The handler answered 5xx: what the fuzzer counts as a crash."""


class Refused4xx(Exception):
    """The handler refused the input with a 4xx: the documented answer to bad input."""


class FuzzMesh:
    """`MeshBridge` without the network: the real `check`, publications kept in a dict."""

    def __init__(self) -> None:
        cfg = MeshConfig(app="fuzz", local_api=LocalApiConfig(services=("*",)))
        self.sidecar: Any = type("S", (), {"config": cfg})()
        self.config = RegistryApisConfig(max_services=8, max_instances=32)
        self.published: dict[str, Instance] = {}

    def check(self, inst: Instance) -> Instance:
        return MeshBridge.check(self, inst)  # type: ignore[arg-type]

    async def publish(self, inst: Instance) -> None:
        self.published[inst.service] = inst

    async def withdraw(self, inst: Instance) -> None:
        self.published.pop(inst.service, None)

    async def services(self) -> list[str]:
        return sorted(self.published)[:8]

    async def endpoints(self, service: str) -> tuple[Endpoint, ...]:
        return (Endpoint(service, "127.0.0.1", 9000, protocol="http"),)

    async def local_address(self, service: str) -> Address:
        return Address("127.0.0.1", 15001)


def _request(data: bytes) -> HttpRequest:
    head, _, body = data.partition(b"\n")
    method, _, rest = head.decode("latin-1").strip().partition(" ")
    target, _, ctype = rest.partition(" ")
    headers = [(b"host", b"127.0.0.1"), (b"content-type", ctype.encode("latin-1"))]
    return HttpRequest(method or "GET", target or "/", headers, body)


class ApiDriver:
    """Drives one registry API on one event loop, keeping its book and checks across inputs
    (so renewals and deregistrations meet registrations); reset every `keep` inputs."""

    def __init__(self, make: Callable[[FuzzMesh, Book, FakeClock], Any], keep: int = 64) -> None:
        self.make, self.keep, self.done = make, keep, 0
        self.loop = asyncio.new_event_loop()
        logging.getLogger("sofamesh.registry_apis").setLevel(logging.CRITICAL)  # a line per 4xx

    def __call__(self, data: bytes) -> None:
        if self.done % self.keep == 0:
            self.clock = FakeClock()
            self.api = BrowserGuard("fuzz", self.make(FuzzMesh(), Book(32), self.clock))
        self.done += 1
        self.clock.advance(1.0)
        response = self.loop.run_until_complete(self._one(_request(data)))
        _judge(response.status if response else 200, response.body if response else b"")

    async def _one(self, req: HttpRequest) -> HttpResponse | None:
        with anyio.move_on_after(0.01):  # a Consul blocking query waits: not what is fuzzed
            response: HttpResponse = await self.api(req)
            await self.api.api.tick(self.clock.now())
            return response
        return None


def eureka(mesh: FuzzMesh, book: Book, clock: FakeClock) -> EurekaApi:
    return EurekaApi(mesh, book, clock, None)  # type: ignore[arg-type]


def consul(mesh: FuzzMesh, book: Book, clock: FakeClock) -> ConsulApi:
    tg = type("TG", (), {"start_soon": lambda self, *a: None})()  # HTTP checks are not probed
    return ConsulApi(mesh, book, clock, tg)  # type: ignore[arg-type]


def nacos(mesh: FuzzMesh, book: Book, clock: FakeClock) -> NacosApi:
    return NacosApi(mesh, book, clock, None, 30.0)  # type: ignore[arg-type]


logging.getLogger("sofamesh.injector").setLevel(logging.CRITICAL)


def admission(data: bytes) -> None:
    """`review.answer` on the body; the webhook's routes and body limit are the HTTP layer's."""
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    status, doc = answer(data, InjectSettings(), now)
    _judge(status, json.dumps(doc).encode())


def _judge(status: int, body: bytes) -> None:
    if status >= 500:
        raise ServerError(f"{status}: {body[:100]!r}")
    if status >= 400:
        raise Refused4xx(status)


def _json_line(method: str, target: str, doc: Any) -> bytes:
    return f"{method} {target} application/json\n".encode() + json.dumps(doc).encode()


def eureka_seeds() -> list[bytes]:
    inst = {"instanceId": "o-1", "app": "ORDERS", "hostName": "h", "ipAddr": "127.0.0.1",
            "port": {"$": 9000, "@enabled": "true"}, "status": "UP",
            "leaseInfo": {"durationInSecs": 30, "renewalIntervalInSecs": 10},
            "metadata": {"version": "v1"}}  # fmt: skip
    xml = (b"POST /eureka/apps/ORDERS application/xml\n<instance><instanceId>o-2</instanceId>"
           b"<hostName>h</hostName><port enabled=\"true\">9001</port><status>UP</status>"
           b"<metadata><zone>z</zone></metadata></instance>")  # fmt: skip
    return [
        _json_line("POST", "/eureka/apps/ORDERS", {"instance": inst}),
        xml,
        b"PUT /eureka/apps/ORDERS/o-1?status=UP&lastDirtyTimestamp=1\n",
        b"PUT /eureka/apps/ORDERS/o-1/status?value=OUT_OF_SERVICE\n",
        b"GET /eureka/apps/delta application/json\n",
        b"GET /eureka/apps/ORDERS/o-1\n",
        b"DELETE /eureka/apps/ORDERS/o-1\n",
    ]


def consul_seeds() -> list[bytes]:
    reg = {"ID": "web-1", "Name": "web", "Tags": ["v1"], "Address": "127.0.0.1", "Port": 8080,
           "Meta": {"version": "v1"},
           "Checks": [{"TTL": "10s", "DeregisterCriticalServiceAfter": "1m"},
                      {"HTTP": "http://127.0.0.1:8080/health", "Interval": "5s"}]}  # fmt: skip
    return [
        _json_line("PUT", "/v1/agent/service/register", reg),
        b"PUT /v1/agent/check/pass/service:web-1:1?note=ok\n",
        _json_line("PUT", "/v1/agent/check/update/service:web-1:1", {"Status": "warning"}),
        b"GET /v1/health/service/web?passing=1&wait=0s\n",
        b"GET /v1/catalog/service/web\n",
        b"PUT /v1/agent/service/deregister/web-1\n",
    ]


def nacos_seeds() -> list[bytes]:
    beat = json.dumps({"serviceName": "DEFAULT_GROUP@@stock", "ip": "127.0.0.1", "port": 9100})
    return [
        b"POST /nacos/v1/ns/instance application/x-www-form-urlencoded\nserviceName=stock"
        b"&ip=127.0.0.1&port=9100&weight=1.0&ephemeral=true&metadata=%7B%22v%22%3A%221%22%7D",
        b"PUT /nacos/v1/ns/instance/beat\nserviceName=stock&beat=" + beat.encode(),
        b"PUT /nacos/v1/ns/instance?serviceName=stock&ip=127.0.0.1&port=9100&enabled=false\n",
        b"GET /nacos/v1/ns/instance/list?serviceName=stock&healthyOnly=true\n",
        b"GET /nacos/v1/ns/service/list?pageNo=1&pageSize=10\n",
        b"DELETE /nacos/v1/ns/instance?serviceName=stock&ip=127.0.0.1&port=9100\n",
    ]


def admission_seeds() -> list[bytes]:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "default", "labels": {"app": "orders"},
                        "annotations": {"sofamesh.io/inject": "true"}},
           "spec": {"containers": [{"name": "app", "image": "orders:1",
                                    "ports": [{"containerPort": 8080}]}]}}  # fmt: skip
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"uid": "u-1", "operation": "CREATE", "namespace": "default",
                          "kind": {"kind": "Pod"}, "object": pod}}  # fmt: skip
    return [json.dumps(review).encode(), json.dumps({**review, "request": {"uid": "u"}}).encode()]


# -- structure-aware mutation: a seed's JSON with one value replaced -----------------------------

ODD_VALUES: list[Any] = [
    None, True, 0, -1, 2**70, 1e308, float("nan"), "", "x" * 5000, [], {},
    [[[[[[[[]]]]]]]], {"a": {"b": {"c": None}}}, "UP", "10s", "127.0.0.1",
]  # fmt: skip


def reshape(rng: Any, seeds: list[bytes], bytewise: Callable[[Any, list[bytes]], bytes]) -> bytes:
    """Half the inputs: `bytewise` mutations; the others: a seed whose JSON body (or a form's
    JSON field) has one value, anywhere in it, replaced by a value of another type or size."""
    seed = rng.choice(seeds)
    head, nl, body = seed.partition(b"\n") if b"\n" in seed[:200] else (b"", b"", seed)
    if rng.random() < 0.5:
        return bytewise(rng, seeds)
    text = body.decode("latin-1")
    doc = _json_or_none(text)
    if doc is not None:
        return head + nl + _reshaped(rng, doc).encode()
    form = parse_qsl(text, keep_blank_values=True)
    if not form:
        return bytewise(rng, seeds)
    at = rng.randrange(len(form))
    field = _json_or_none(form[at][1])
    value = _reshaped(rng, field) if field is not None else str(rng.choice(ODD_VALUES))
    form[at] = (form[at][0], value)
    return head + nl + urlencode(form).encode()


def _json_or_none(text: str) -> Any:
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict | list) else None


def _reshaped(rng: Any, doc: Any) -> str:
    for _ in range(rng.randint(1, 3)):
        doc = _replace(rng, doc)
    text = json.dumps(doc)
    if rng.random() < 0.03:  # nested past any parser's recursion limit
        n = rng.randint(1000, 100_000)
        text = "[" * n + text + "]" * n
    return text


def _replace(rng: Any, doc: Any) -> Any:
    if not isinstance(doc, dict | list) or not doc or rng.random() < 0.25:
        return (
            copy.deepcopy(rng.choice(ODD_VALUES))
            if rng.random() < 0.8
            else _deep(rng.randint(10, 500))
        )
    keys = list(doc) if isinstance(doc, dict) else list(range(len(doc)))
    key = rng.choice(keys)
    if isinstance(doc, dict) and rng.random() < 0.1:
        del doc[key]  # a missing field
        return doc
    doc[key] = _replace(rng, doc[key])
    return doc


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value
