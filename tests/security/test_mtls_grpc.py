"""A grpcio client with TLS credentials through a strict sidecar: ALPN h2, the verified caller.

grpcio checks the provider's certificate by host name, so the provider's
certificate also carries a DNS SAN (`sofamesh ca issue --dns`). The app
behind the sidecar (a grpcio server) answers with the caller the mesh told
it; the declared `x-sofamesh-caller` metadata never counts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from concurrent import futures
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import grpc
import pytest
from tests.security.meshes import inbound, sidecar, tls_of
from tests.security.pki import DOMAIN, issue_files

from sofamesh.security.ca import CertificateAuthority
from sofamesh.security.identity import IdentityFiles

pytestmark = pytest.mark.anyio
SERVICE = "test.Echo"
WHO = f"/{SERVICE}/Who"


def who(_request: bytes, context: grpc.ServicerContext) -> bytes:
    metadata = dict(context.invocation_metadata())
    return str(metadata.get("x-sofamesh-caller", "")).encode()


@asynccontextmanager
async def grpc_app() -> AsyncIterator[int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Who": grpc.unary_unary_rpc_method_handler(who)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(0).wait()


def call(address: str, files: IdentityFiles | None) -> tuple[grpc.StatusCode, bytes]:
    """One unary call declaring the caller "web"; (status, reply)."""
    if files is None:
        channel = grpc.insecure_channel(address)
    else:
        creds = grpc.ssl_channel_credentials(
            root_certificates=Path(files.trust_bundle).read_bytes(),
            private_key=Path(files.key).read_bytes(),
            certificate_chain=Path(files.cert).read_bytes(),
        )
        options = [("grpc.ssl_target_name_override", "orders.mesh")]
        channel = grpc.secure_channel(address, creds, options=options)
    with channel:
        stub: Callable[..., Any] = channel.unary_unary(WHO)
        try:
            reply = stub(b"", metadata=[("x-sofamesh-caller", "web")], timeout=10)
        except grpc.RpcError as exc:
            return exc.code(), b""
    return grpc.StatusCode.OK, reply


def provider(tmp: Path, app: int, files: IdentityFiles) -> dict[str, Any]:
    rules = {"auth": {"inbound": {"rules": [{"service": SERVICE, "allow": ["app:shop"]}]}}}
    return {
        "app": "orders",
        "registry": f"file://{tmp}/reg?poll=0.05",
        "inbound": [
            {
                "protocol": "grpc",
                "listen": "127.0.0.1:0",
                "upstream": f"127.0.0.1:{app}",
                "services": [SERVICE],
            }
        ],
        "tls": tls_of(files, "strict"),
        "rules": rules,
    }


async def test_grpcio_with_tls_credentials_through_a_strict_sidecar(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(DOMAIN)
    orders = issue_files(ca, tmp_path / "orders", "orders", dns=("orders.mesh",))
    shop, web = issue_files(ca, tmp_path / "shop", "shop"), issue_files(ca, tmp_path / "web", "web")
    async with grpc_app() as app, sidecar(provider(tmp_path, app, orders)) as prov:
        address = str(inbound(prov))
        with anyio.fail_after(60):
            assert await anyio.to_thread.run_sync(call, address, shop) == (
                grpc.StatusCode.OK,
                b"shop",
            )
            denied = await anyio.to_thread.run_sync(call, address, web)
            assert denied[0] is grpc.StatusCode.PERMISSION_DENIED
            plaintext = await anyio.to_thread.run_sync(call, address, None)
            assert plaintext[0] is grpc.StatusCode.UNAVAILABLE


async def test_grpc_between_two_sidecars_over_mtls(tmp_path: Path) -> None:
    """grpcio (plaintext, to its own sidecar) -> sidecar =mTLS, ALPN h2=> sidecar -> grpcio."""
    ca = CertificateAuthority.create(DOMAIN)
    orders, shop = (issue_files(ca, tmp_path / app, app) for app in ("orders", "shop"))
    consumer = {
        "app": "shop",
        "registry": f"file://{tmp_path}/reg?poll=0.05",
        "outbound": [{"protocol": "grpc", "listen": "127.0.0.1:0"}],
        "tls": tls_of(shop, "strict"),
    }
    async with grpc_app() as app, sidecar(provider(tmp_path, app, orders)) as prov:
        async with sidecar(consumer) as cons:
            address = str(cons.bound["outbound[0]"])
            with anyio.fail_after(60):
                assert await anyio.to_thread.run_sync(call, address, None) == (
                    grpc.StatusCode.OK,
                    b"shop",
                )
        assert prov.runtime.stats.counters["tls.handshakes"] == 1
