"""The server side of mutual TLS: listeners that secure connections, and a data plane's TLS.

- `TlsListener`: a listener whose connections are secured before the server
  sees them. `strict` refuses a connection whose first byte does not open a
  TLS handshake (0x16, a handshake record) with a log line naming the peer;
  `permissive` serves it as plaintext, the sniffed bytes given back.
- `MeshTls`: what a data plane with `tls:` holds: its contexts, its
  listeners' handshake, its client, and the endpoint metadata both ends read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
from anyio.streams.tls import TLSAttribute

from sofamesh.endpoint import Endpoint
from sofamesh.transport.net import format_address
from sofamesh.transport.serving import accept_until_closed, leaves
from sofamesh.transport.tls import (
    HANDSHAKE_RECORD,
    HANDSHAKE_TIMEOUT,
    LOST,
    META_ID,
    META_MODE,
    PERMISSIVE,
    REFUSED,
    STRICT,
    ClientTls,
    Count,
    SecureStream,
    TlsContexts,
    TlsMode,
    count_nothing,
    handshake,
    refusal_reason,
)

if TYPE_CHECKING:
    from sofamesh.security.identity import IdentitySource

log = logging.getLogger("sofamesh.tls")


class Prefixed(anyio.abc.ByteStream):
    """A connection whose first bytes were read to sniff it, given back to the next reader."""

    def __init__(self, inner: anyio.abc.ByteStream, prefix: bytes) -> None:
        self._inner = inner
        self._prefix = prefix

    @property
    def drained(self) -> bool:
        """Every sniffed byte has been read again."""
        return not self._prefix

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix[:max_bytes], self._prefix[max_bytes:]
            return data
        return await self._inner.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        await self._inner.send(item)

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    async def aclose(self) -> None:
        await self._inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._inner.extra_attributes


class TlsListener(anyio.abc.Listener[anyio.abc.ByteStream]):
    """Secures each connection of `inner` (`mode` permissive or strict) before `handler` runs."""

    def __init__(
        self,
        inner: anyio.abc.Listener[Any],
        contexts: TlsContexts,
        mode: TlsMode,
        alpn: tuple[str, ...],
        *,
        name: str = "inbound",
        count: Count = count_nothing,
    ) -> None:
        assert mode in (PERMISSIVE, STRICT)
        self.inner, self.contexts, self.mode, self.alpn = inner, contexts, mode, alpn
        self.name = name
        self._count = count

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
        secured = await self.secure(stream)
        if secured is not None:
            await handler(secured)

    async def secure(self, stream: anyio.abc.ByteStream) -> anyio.abc.ByteStream | None:
        """The connection to serve (TLS, or plaintext when permissive), or None (closed)."""
        peer = format_address(stream.extra(anyio.abc.SocketAttribute.remote_address, None))
        with anyio.move_on_after(HANDSHAKE_TIMEOUT):
            try:
                first = await stream.receive()
            except LOST:
                await anyio.aclose_forcefully(stream)
                return None
            if first[0] != HANDSHAKE_RECORD:
                return await self._plaintext(stream, first, peer)
            return await self._handshake(stream, first, peer)
        log.warning(
            "%s: %s finished no handshake (nor, if permissive, sent a byte) within %gs; closed",
            self.name,
            peer,
            HANDSHAKE_TIMEOUT,
        )
        self._count("tls.handshake_failures")
        await anyio.aclose_forcefully(stream)
        return None

    async def _plaintext(
        self, stream: anyio.abc.ByteStream, first: bytes, peer: str
    ) -> anyio.abc.ByteStream | None:
        if self.mode == PERMISSIVE:
            self._count("tls.plaintext_accepted")
            return Prefixed(stream, first)
        self._count("tls.plaintext_refused")
        log.warning(
            "%s: refused a plaintext connection from %s: mTLS is strict here", self.name, peer
        )
        await anyio.aclose_forcefully(stream)
        return None

    async def _handshake(
        self, stream: anyio.abc.ByteStream, first: bytes, peer: str
    ) -> SecureStream | None:
        prefixed = Prefixed(stream, first)
        try:  # no identity yet (the control plane has not issued one) refuses, too
            ctx = self.contexts.context(True, self.alpn)
            tls = await handshake(prefixed, ctx, server_side=True)
            if prefixed.drained:  # the sniffed bytes were the handshake's: read the TCP stream
                tls.transport_stream = stream
            self.contexts.check_peer(tls.extra(TLSAttribute.ssl_object))
        except REFUSED as exc:
            self._count("tls.handshake_failures")
            log.warning("%s: refused mTLS from %s: %s", self.name, peer, refusal_reason(exc))
            await anyio.aclose_forcefully(stream)
            return None
        self._count("tls.handshakes")
        return tls

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.inner.extra_attributes


class MeshTls:
    """One data plane's mutual TLS: its identity, its listeners' handshake, its client's choice.

    `learn(endpoint)` reads an endpoint's registry metadata once: one that
    publishes `mtls` is called over TLS and must present the ID it published.
    """

    def __init__(
        self, mode: TlsMode, source: IdentitySource, *, count: Count = count_nothing
    ) -> None:
        self.mode = mode
        self.contexts = TlsContexts(source)
        self.client = ClientTls(self.contexts, count=count)
        self._count = count
        self._learned: set[Endpoint] = set()

    def listener(
        self, inner: anyio.abc.Listener[Any], alpn: tuple[str, ...], name: str
    ) -> TlsListener:
        return TlsListener(inner, self.contexts, self.mode, alpn, name=name, count=self._count)

    def meta(self, mode: TlsMode | None = None) -> dict[str, str]:
        """What an endpoint served by this data plane publishes about its TLS (`mode`: its
        service's, if stricter than the data plane's)."""
        identity = str(self.contexts.source.current().spiffe_id)
        return {META_MODE: mode or self.mode, META_ID: identity}

    async def probe_connect(self, ep: Endpoint, alpn: tuple[str, ...]) -> anyio.abc.ByteStream:
        """A health probe's connection: mTLS to an endpoint that publishes it, as calls get."""
        self.learn(ep)
        return await self.client.connect(alpn, ep.host, ep.port, HANDSHAKE_TIMEOUT)

    def learn(self, ep: Endpoint) -> None:
        if ep in self._learned:
            return
        if len(self._learned) >= _LEARNED_MAX:
            self._learned.clear()
        self._learned.add(ep)
        meta = dict(ep.meta)
        if meta.get(META_MODE) in (PERMISSIVE, STRICT):
            self.client.expect(ep.host, ep.port, meta.get(META_ID, ""))
        else:
            self.client.endpoints.pop((ep.host, ep.port), None)


_LEARNED_MAX = 10_000  # endpoints remembered as read; past it, read again
