"""One source of truth per Bolt call: a header map and a `SofaRequest` body that disagree.

Governance judges the header map (`sofa_head_method_name`, `service`); the provider
runs the method the body names. A crafted frame whose header says `echo` and whose
body says `secret` is refused, with a status a SOFARPC client reads, by a sidecar
process and by the SDK provider, and the connection stays open for the caller's
other requests.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from bolt_support import RawPeer, raw_client

import sofamesh
from sofamesh.codecs.bolt import RequestFrame, ResponseFrame, ResponseStatus, request
from sofamesh.codecs.bolt.sofarpc import (
    SOFA_CLASSES,
    SofaRequest,
    decode_response,
    encode_request,
    error_of,
)
from sofamesh.config import Address
from sofamesh.demo.procs import Procs
from sofamesh.model import Headers, Invocation, Status
from sofamesh.protocols.bolt.mapping import ERROR_HEADER, NameMismatch, request_to_invocation
from sofamesh.registry.memory import MemoryHub, MemoryRegistry
from sofamesh.sdk.bolt import ServiceTerminal

pytestmark = pytest.mark.anyio


class App:
    def __init__(self) -> None:
        self.ran: list[str] = []

    def echo(self, value: str) -> str:
        self.ran.append("echo")
        return value

    def secret(self, value: str) -> str:
        self.ran.append("secret")
        return "the crown jewels"


def frame(
    rid: int, service: str, header_method: str, body_method: str, body_service: str = ""
) -> RequestFrame:
    """A request whose header map names `header_method` and whose body names `body_method`."""
    req = SofaRequest(body_method, ["java.lang.String"], body_service or service, None, {})
    headers = {"service": service, "sofa_head_method_name": header_method}
    return request(rid, encode_request(req, ["x"]), headers=headers)


async def answer(peer: RawPeer) -> ResponseFrame:
    got = await peer.next_frame()
    assert isinstance(got, ResponseFrame), got
    return got


def test_the_mapping_refuses_a_header_and_body_that_disagree() -> None:
    service = "com.example.Echo:1.0"
    with pytest.raises(NameMismatch, match="method echo, the body secret"):
        request_to_invocation(f := frame(1, service, "echo", "secret"), f.headers())
    with pytest.raises(NameMismatch, match="service"):
        request_to_invocation(f := frame(1, service, "echo", "echo", "a.B:1.0"), f.headers())
    agreed = frame(1, service, "echo", "echo")
    inv = request_to_invocation(agreed, agreed.headers())
    assert (inv.service, inv.method) == (service, "echo")


async def test_the_sdk_provider_runs_only_the_method_the_chain_judged() -> None:
    app = App()
    terminal = ServiceTerminal(app, "com.example.Echo:1.0", SOFA_CLASSES, {})
    crafted = frame(1, "com.example.Echo:1.0", "echo", "secret")
    inv = Invocation("bolt", "com.example.Echo:1.0", "echo", Headers(), payload=crafted)
    result = await terminal(inv)
    assert result.status is Status.BAD_REQUEST and "secret" in result.detail
    assert app.ran == []


async def exercise(port: int, service: str, app: App) -> None:
    """The crafted frame is refused; an honest call on the same connection still works."""
    async with raw_client(port) as peer:
        await peer.send(frame(1, service, "echo", "secret"))
        refused = await answer(peer)
        assert refused.status == ResponseStatus.CODEC_EXCEPTION
        assert refused.headers() == ((ERROR_HEADER, "bad_request"),)
        assert "header names method echo, the body secret" in error_of(refused.body)[0]
        await peer.send(frame(2, service, "echo", "echo"))
        honest = await answer(peer)
        assert honest.status == ResponseStatus.SUCCESS
        assert decode_response(honest.body).appResponse == "x"
    assert app.ran == ["echo"]


@asynccontextmanager
async def provider(app: App, service: str) -> AsyncIterator[Address]:
    iface, version = service.rsplit(":", 1)
    async with (
        sofamesh.open_mesh(
            {"app": "app", "registry": "memory://"}, env={}, registry=MemoryRegistry(MemoryHub())
        ) as m,
        m.serve_bolt(app, iface, version=version) as served,
    ):
        yield served.address


async def test_the_sdk_provider_refuses_the_crafted_frame() -> None:
    app, service = App(), f"com.example.S{uuid.uuid4().hex[:8]}:1.0"
    async with provider(app, service) as address:
        await exercise(address.port, service, app)


async def test_a_sidecar_process_refuses_the_crafted_frame(
    tmp_path: Path, anyio_backend: str
) -> None:
    app, service = App(), f"com.example.S{uuid.uuid4().hex[:8]}:1.0"
    rules: dict[str, Any] = {
        "auth": {"inbound": {"rules": [{"service": service, "method": "secret", "deny": ["web"]}]}}
    }
    async with provider(app, service) as upstream, Procs(tmp_path, anyio_backend) as procs:
        inbound = {
            "protocol": "bolt",
            "listen": "127.0.0.1:0",
            "upstream": str(upstream),
            "services": [service],
        }
        config = {
            "app": "p",
            "registry": f"file://{tmp_path}/reg",
            "rules": rules,
            "inbound": [inbound],
        }
        ready = await procs.sidecar("p", config)
        await exercise(int(ready["inbound[0]"].rsplit(":", 1)[1]), service, app)
    assert "refused" in (tmp_path / "sidecar-p.log").read_text()
