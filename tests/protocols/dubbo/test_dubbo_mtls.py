"""Dubbo between sidecars under mutual TLS (`tls: {mode: strict}` on both): the Node
consumer reaches the Node provider, the SDK consumer the SDK provider, which learns its
caller from the certificate; a plaintext Dubbo call to the strict listener is refused,
with a log line."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from dubbo_support import SERVICE, node_call, node_provider, raw_client, request, sidecars
from tests.security.meshes import identities, tls_of
from tests.security.pki import DOMAIN

import sofamesh
from sofamesh.config import Address, load_config
from sofamesh.registry.memory import MemoryHub, MemoryRegistry
from sofamesh.sdk.dubbo import current_dubbo_call
from sofamesh.security.ca import CertificateAuthority

pytestmark = pytest.mark.anyio

IFACE, VERSION = SERVICE.split(":")


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(DOMAIN)


@asynccontextmanager
async def strict_mesh(
    ca: CertificateAuthority, tmp: Path, upstream: int
) -> AsyncIterator[tuple[Address, Address, Address]]:
    """shop's sidecar -> mTLS -> prov's sidecar -> the app on `upstream`, both strict, on a
    registry of their own; yields shop's outbound and admin addresses and prov's inbound."""
    ids = identities(ca, tmp, "shop", "prov")
    registry = f"file://{tmp}/reg?poll=0.05"
    prov = {
        "app": "prov", "registry": registry, "tls": tls_of(ids["prov"], "strict"),
        "inbound": [{"protocol": "dubbo", "listen": "127.0.0.1:0",
                     "upstream": f"127.0.0.1:{upstream}", "services": [SERVICE]}],
    }  # fmt: skip
    shop = {
        "app": "shop", "registry": registry, "tls": tls_of(ids["shop"], "strict"),
        "admin": "127.0.0.1:0", "outbound": [{"protocol": "dubbo", "listen": "127.0.0.1:0"}],
    }  # fmt: skip
    async with sidecars(load_config(prov, env={}), load_config(shop, env={})) as (p, s):
        yield s.bound["outbound[0]"], s.bound["admin"], p.bound["inbound[0]"]


async def test_node_consumer_to_node_provider_over_mtls(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    with node_provider() as port:
        async with strict_mesh(ca, tmp_path, port) as (out, _, _):
            assert await node_call(out.port, "add", "int:2", "int:40") == ["RESULT 42"]
            assert await node_call(out.port, "sayHello", "str:\U0001f600") == [
                'RESULT "Hello \U0001f600"'
            ]


class Demo:
    def __init__(self) -> None:
        self.callers: list[str] = []

    def sayHello(self, name: str) -> str:
        self.callers.append(current_dubbo_call.get().caller)
        return "Hello " + name


async def test_sdk_consumer_to_sdk_provider_over_mtls(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    demo = Demo()
    private: dict[str, Any] = {"registry": MemoryRegistry(MemoryHub())}  # not the sidecars'
    async with (
        sofamesh.open_mesh({"app": "prov", "registry": "memory://"}, env={}, **private) as app,
        app.serve_dubbo(demo, interface=IFACE, version=VERSION) as served,
        strict_mesh(ca, tmp_path, served.address.port) as (_, admin, _),
        sofamesh.open_mesh(
            {"app": "shop", "mode": "sidecar", "sidecar": str(admin)}, env={}
        ) as shop,  # fmt: skip
    ):
        consumer = shop.dubbo_consumer(IFACE, version=VERSION)
        assert await consumer.sayHello("tls") == "Hello tls"
    assert demo.callers == ["shop"]  # as its sidecar learned it: from the certificate


async def test_a_plaintext_dubbo_call_to_a_strict_listener_is_refused(
    ca: CertificateAuthority, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with node_provider() as port:
        async with strict_mesh(ca, tmp_path, port) as (_, _, inbound):
            peer = raw_client(inbound.port)
            async with peer as plain:
                await plain.send(request(1, "sayHello", "Ljava/lang/String;", "plain"))
                assert await plain.next_frame() is None  # closed unanswered
    assert "refused a plaintext connection" in caplog.text
    assert "mTLS is strict here" in caplog.text
