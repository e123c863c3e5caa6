"""One-way TLS for the control plane's API: its HTTPS listener, and its clients' connect.

The mesh's hops are mutual TLS with workload identities (`tls.py`); the
control plane's API is plain HTTPS: the server presents a certificate for
its host name or address (`sofamesh ca issue-server`), clients verify it
against a CA file (`control_ca`, `sofamesh ctl --ca`) and check the name,
and callers authenticate with their bearer tokens inside.

- `HttpsListener`: secures each accepted connection before the server sees
  it; a failed handshake is a log line naming the peer and the reason. The
  certificate and key are read again when either file changes, so a renewed
  server certificate needs no restart.
- `https_connector(cafile)`: a `connect(host, port, timeout)` for an HTTP pool
  that verifies the server's certificate and name.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import anyio
import anyio.abc

from sofamesh.transport.errors import ConnectError
from sofamesh.transport.net import Connect, connect, format_address
from sofamesh.transport.serving import accept_until_closed, leaves
from sofamesh.transport.tls import (
    ALPN_HTTP1,
    HANDSHAKE_TIMEOUT,
    REFUSED,
    SecureStream,
    handshake,
    refusal_reason,
)

log = logging.getLogger("sofamesh.tls")


class ServerCertificate:
    """The server context of a certificate and key file pair, made again when they change."""

    def __init__(self, cert: str, key: str) -> None:
        self.cert, self.key = cert, key
        self._stamp = self._stat()
        self.context = self._make()  # at start, files that do not load are an error

    def _stat(self) -> tuple[tuple[int, int], ...]:
        return tuple((s.st_mtime_ns, s.st_size) for s in map(os.stat, (self.cert, self.key)))

    def _make(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert, self.key)
        ctx.set_alpn_protocols(list(ALPN_HTTP1))
        return ctx

    def current(self) -> ssl.SSLContext:
        try:
            stamp = self._stat()
            if stamp != self._stamp:
                self.context, self._stamp = self._make(), stamp
                log.info("server certificate reloaded from %s", self.cert)
        except (OSError, ssl.SSLError) as exc:  # half-written files: keep the last good pair
            log.warning("server certificate not reloaded, keeping the last: %s", exc)
        return self.context


class HttpsListener(anyio.abc.Listener[anyio.abc.ByteStream]):
    """Secures each connection of `inner` with `certificate` before `handler` runs."""

    def __init__(
        self, inner: anyio.abc.Listener[Any], certificate: ServerCertificate, name: str
    ) -> None:
        self.inner, self.certificate, self.name = inner, certificate, name
        self.refused = 0

    async def serve(
        self,
        handler: Callable[[anyio.abc.ByteStream], Any],
        task_group: anyio.abc.TaskGroup | None = None,
    ) -> None:
        secured = partial(self._secure_then, handler)
        async with anyio.create_task_group() as tg:
            for leaf in leaves(self.inner):
                tg.start_soon(accept_until_closed, leaf, task_group or tg, secured, self.name)

    async def _secure_then(
        self, handler: Callable[[anyio.abc.ByteStream], Any], stream: anyio.abc.SocketStream
    ) -> None:
        peer = format_address(stream.extra(anyio.abc.SocketAttribute.remote_address, None))
        tls: SecureStream | None = None
        with anyio.move_on_after(HANDSHAKE_TIMEOUT):
            try:
                tls = await handshake(stream, self.certificate.current(), server_side=True)
            except REFUSED as exc:
                self._refuse(peer, refusal_reason(exc))
                await anyio.aclose_forcefully(stream)
                return
        if tls is None:
            self._refuse(peer, f"no handshake within {HANDSHAKE_TIMEOUT:g}s")
            await anyio.aclose_forcefully(stream)
            return
        await handler(tls)

    def _refuse(self, peer: str, reason: str) -> None:
        self.refused += 1
        log.warning("%s: refused a TLS connection from %s: %s", self.name, peer, reason)

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.inner.extra_attributes


def client_context(cafile: str | None) -> ssl.SSLContext:
    """Verifies a server's certificate against `cafile` (else the system's CAs), and its name."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(list(ALPN_HTTP1))
    return ctx


def https_connector(cafile: str | None) -> Connect:
    """A `connect(host, port, timeout)` for an HTTP/1.1 pool, over verified TLS."""
    return partial(_connect_https, client_context(cafile))


async def _connect_https(
    ctx: ssl.SSLContext, host: str, port: int, timeout: float
) -> anyio.abc.ByteStream:
    stream = await connect(host, port, timeout)
    with anyio.move_on_after(timeout):
        try:
            tls = await SecureStream.wrap(
                stream, server_side=False, hostname=host, ssl_context=ctx, standard_compatible=False
            )
        except REFUSED as exc:
            await anyio.aclose_forcefully(stream)
            raise ConnectError(f"TLS to {host}:{port} failed: {refusal_reason(exc)}") from exc
        return tls
    await anyio.aclose_forcefully(stream)
    raise ConnectError(f"TLS handshake with {host}:{port} timed out after {timeout:g}s")
