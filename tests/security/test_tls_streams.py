"""The TLS streams under every protocol: they fail as TCP streams do, on asyncio and trio."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import pytest
from tests.security.pki import DOMAIN, issue_files

from sofamesh.security.ca import CertificateAuthority, key_pem, new_key, write_file
from sofamesh.security.identity import IdentitySource
from sofamesh.transport.streams import time_limit
from sofamesh.transport.tls import ALPN_HTTP1, STRICT, peer_identity
from sofamesh.transport.tls_listener import MeshTls

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def tls_pair(tmp: Path) -> AsyncIterator[tuple[anyio.abc.ByteStream, anyio.abc.ByteStream]]:
    """(client, server) ends of one mTLS connection between two identities of one CA."""
    ca = CertificateAuthority.create(DOMAIN)
    server_tls = MeshTls(STRICT, IdentitySource(issue_files(ca, tmp / "s", "orders")))
    client_tls = MeshTls(STRICT, IdentitySource(issue_files(ca, tmp / "c", "shop")))
    inner = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = inner.extra(anyio.abc.SocketAttribute.local_port)
    client_tls.client.expect("127.0.0.1", port, "spiffe://mesh.test/ws/prod/app/orders")
    accepted: list[anyio.abc.ByteStream] = []
    ready = anyio.Event()

    async def keep(stream: anyio.abc.ByteStream) -> None:
        accepted.append(stream)
        ready.set()
        await anyio.sleep_forever()

    listener = server_tls.listener(inner, ALPN_HTTP1, "test")
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, keep)
        client = await client_tls.client.connect(ALPN_HTTP1, "127.0.0.1", port, 5.0)
        await ready.wait()
        try:
            yield client, accepted[0]
        finally:
            await client.aclose()
            await anyio.aclose_forcefully(accepted[0])
            tg.cancel_scope.cancel()


async def test_bytes_both_ways_and_the_verified_peer(tmp_path: Path) -> None:
    async with tls_pair(tmp_path) as (client, server):
        assert peer_identity(server) == "spiffe://mesh.test/ws/prod/app/shop"
        await client.send(b"ping")
        assert await server.receive() == b"ping"
        await server.send(b"pong" * 10_000)
        got = b""
        while len(got) < 40_000:
            got += await client.receive()
        assert got == b"pong" * 10_000


async def test_a_time_limit_ends_a_wait_with_timeout_error(tmp_path: Path) -> None:
    async with tls_pair(tmp_path) as (client, _server):
        with pytest.raises(TimeoutError), time_limit(client, 0.05):
            await client.receive()


async def test_sending_to_a_closed_peer_is_a_broken_stream(tmp_path: Path) -> None:
    async with tls_pair(tmp_path) as (client, server):
        await server.aclose()
        with pytest.raises((anyio.BrokenResourceError, anyio.EndOfStream)):
            assert await client.receive() == b""  # the close reaches the client
        with pytest.raises(anyio.BrokenResourceError):
            for _ in range(100):  # the kernel may take a few writes to notice
                await client.send(b"x" * 65536)


async def test_a_renewal_half_written_does_not_break_handshakes(tmp_path: Path) -> None:
    # A renewal writes the new key before the new certificate. A TLS context made between
    # the two (the first handshake after the identity changed) must use the pair the
    # identity was checked with, not the files as they are at that moment.
    ca = CertificateAuthority.create(DOMAIN)
    server_files = issue_files(ca, tmp_path / "s", "orders")
    server_source = IdentitySource(server_files)
    assert str(server_source.current().spiffe_id).endswith("/app/orders")
    write_file(Path(server_files.key), key_pem(new_key()), 0o600)  # the key, not yet its cert
    server_tls = MeshTls(STRICT, server_source)
    client_tls = MeshTls(STRICT, IdentitySource(issue_files(ca, tmp_path / "c", "shop")))
    inner = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = inner.extra(anyio.abc.SocketAttribute.local_port)
    client_tls.client.expect("127.0.0.1", port, "spiffe://mesh.test/ws/prod/app/orders")
    served = anyio.Event()

    async def serve(stream: anyio.abc.ByteStream) -> None:
        async with stream:
            await stream.send(await stream.receive())
            served.set()

    listener = server_tls.listener(inner, ALPN_HTTP1, "test")
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        client = await client_tls.client.connect(ALPN_HTTP1, "127.0.0.1", port, 5.0)
        async with client:
            await client.send(b"ping")
            with anyio.fail_after(5):
                assert await client.receive() == b"ping"
                await served.wait()
        tg.cancel_scope.cancel()
