"""What runs inside an injected pod: the readiness probe, and the address a sidecar publishes."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import AsyncIterator

import anyio
import anyio.abc
import pytest
from tests.deploy.workloads import NOW, SETTINGS, pod

from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.config import Address, load_config
from sofamesh.deploy.inject import inject
from sofamesh.protocols.http.server import ConnInfo, Http1Server
from sofamesh.sidecar.app import Sidecar


class Admin:
    """A stand-in for the sidecar's admin API: `/ready` answers `status`."""

    def __init__(self) -> None:
        self.status = 503
        self.port = 0

    async def __call__(self, request: HttpRequest, _info: ConnInfo) -> HttpResponse:
        code = self.status if request.target == "/ready" else 404
        return HttpResponse(code, [], b"LIVE\n" if code == 200 else b"INITIALIZING\n")


@pytest.fixture
async def admin() -> AsyncIterator[Admin]:
    handler = Admin()
    server = Http1Server(handler)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    handler.port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve, listener)
        yield handler
        await server.drain()


def probe_command(port: int) -> list[str]:
    """The injected sidecar's probe, run here as the kubelet runs it in the pod."""
    proxy = inject(pod(), SETTINGS, NOW)["spec"]["initContainers"][1]
    command: list[str] = proxy["readinessProbe"]["exec"]["command"]
    assert command == proxy["startupProbe"]["exec"]["command"]
    assert command[0] == "python" and command[-1] == "15000"
    return [sys.executable, *command[1:-1], str(port)]


@pytest.mark.anyio
async def test_the_probe_follows_ready(admin: Admin) -> None:
    argv = probe_command(admin.port)
    failed = await anyio.run_process(argv, check=False)
    assert failed.returncode == 1
    assert b"sofamesh sidecar not ready" in failed.stderr
    admin.status = 200
    assert (await anyio.run_process(argv, check=False)).returncode == 0


def test_the_probe_fails_on_a_closed_port() -> None:
    with socket.socket() as s:  # a port that was free a moment ago, closed now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run(probe_command(port), capture_output=True)
    assert proc.returncode == 1
    assert b"Connection refused" in proc.stderr


def sidecar(listen: str, **extra: str) -> Sidecar:
    inbound = {"listen": listen, "protocol": "http", "services": ["orders"], **extra}
    inbound["upstream"] = "127.0.0.1:8080"
    return Sidecar(load_config({"app": "orders", "inbound": [inbound]}, env={}))


def test_a_wildcard_listener_publishes_the_pod_ip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_IP", "10.244.1.7")
    assert sidecar("0.0.0.0:15006").inbound_address("http", "orders") == Address(
        "10.244.1.7", 15006
    )
    explicit = sidecar("0.0.0.0:15006", advertise="192.0.2.1:15006")
    assert explicit.inbound_address("http", "orders") == Address("192.0.2.1", 15006)


def test_outside_a_pod_the_address_is_as_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POD_IP", raising=False)
    assert sidecar("0.0.0.0:15006").inbound_address("http", "orders") == Address("0.0.0.0", 15006)
    monkeypatch.setenv("POD_IP", "10.244.1.7")
    assert sidecar("127.0.0.1:15006").inbound_address("http", "orders") == Address(
        "127.0.0.1", 15006
    )
