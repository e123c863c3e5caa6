"""A Consul HTTP check is probed by the sidecar: the service leaves the mesh when it fails."""

from __future__ import annotations

import json
from typing import Any

import anyio
import anyio.abc
import pytest
from recording_mesh import RecordingMesh

from sofamesh.clock import FakeClock
from sofamesh.codecs.http1 import HttpRequest
from sofamesh.config.model import RegistryApisConfig
from sofamesh.sidecar.registry_apis.book import Book
from sofamesh.sidecar.registry_apis.consul import ConsulApi
from sofamesh.testing.process import poll_until

pytestmark = pytest.mark.anyio


class HealthEndpoint:
    """An app's health URL on loopback, answering `status`."""

    def __init__(self) -> None:
        self.status = 200

    async def serve(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()
            await stream.send(f"HTTP/1.1 {self.status} X\r\ncontent-length: 0\r\n\r\n".encode())


def _mesh() -> Any:
    mesh = RecordingMesh()
    mesh.config = RegistryApisConfig(max_services=8)
    mesh.sidecar.config.app = "billing"
    mesh.sidecar.config.local_api = type("L", (), {"max_lease": 300.0, "upstreams": ()})()
    return mesh


async def test_an_http_check_follows_the_apps_answers() -> None:
    health = HealthEndpoint()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    mesh = _mesh()
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, health.serve)
        api = ConsulApi(mesh, Book(8), FakeClock(), tg)
        check = {"HTTP": f"http://127.0.0.1:{port}/health", "Interval": "50ms"}
        body = {"Name": "billing", "ID": "b-1", "Port": 9000, "Check": check}
        reg = HttpRequest("PUT", "/v1/agent/service/register", [], json.dumps(body).encode())
        assert (await api(reg)).status == 200

        async def published() -> bool:
            return "billing" in mesh.published

        async def withdrawn() -> bool:
            return not await published()

        await poll_until(published, 5)
        health.status = 503
        await poll_until(withdrawn, 5)
        checks = json.loads((await api(HttpRequest("GET", "/v1/agent/checks"))).body)
        assert checks["service:b-1"]["Status"] == "critical"
        assert "503" in checks["service:b-1"]["Output"]
        health.status = 429  # Consul's warning: still routed
        await poll_until(published, 5)
        far = {"HTTP": "http://10.1.2.3/health", "Interval": "1s"}
        body = {"Name": "billing", "ID": "b-2", "Port": 9000, "Check": far}
        reg = HttpRequest("PUT", "/v1/agent/service/register", [], json.dumps(body).encode())
        assert (await api(reg)).status == 403  # the sidecar probes this host only
        tg.cancel_scope.cancel()
