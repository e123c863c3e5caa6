"""Mutual TLS on mesh hops: contexts from the workload identity, both ends' wraps, the peer's ID.

Every mesh hop between two data planes (sidecar or SDK, either way round) can
run over mutual TLS; the hops between an app and its own sidecar on loopback
stay plaintext. TLS is the standard library's `ssl` under anyio's `TLSStream`,
over the same TCP streams as plaintext (`streams.py`), so a protocol's server
and client cannot tell the difference except by the peer's identity.

- `TlsContexts`: the server and client `SSLContext`s of the identity in force,
  made again when its files change (new connections get the new certificate,
  open ones finish on theirs). Both ends present a certificate and require
  the other's (`CERT_REQUIRED`); host names are not checked, the peer's
  SPIFFE ID is: it must be in our trust domain, and a client that knows the
  ID its endpoint published requires exactly that one.
- `TlsListener`: a listener whose connections are secured before the server
  sees them. `strict` refuses a connection whose first byte does not open a
  TLS handshake (0x16, a handshake record) with a log line naming the peer;
  `permissive` serves it as plaintext.
- `ClientTls`: the connect function of a protocol's pool: TLS to the
  addresses whose registry metadata says they take mTLS, plain TCP elsewhere.
- `peer_identity(stream)`: the verified SPIFFE ID of a server connection's
  peer, "" on plaintext; servers read it once per connection.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Literal, cast

import anyio
import anyio.abc
from anyio.streams.tls import TLSAttribute, TLSStream

from sofamesh.endpoint import Endpoint
from sofamesh.security.identity import Identity, IdentitySource
from sofamesh.security.spiffe import SpiffeId
from sofamesh.transport.errors import ConnectError
from sofamesh.transport.net import STREAM_ERRORS, Connect, connect, format_address
from sofamesh.transport.serving import accept_until_closed, leaves
from sofamesh.transport.streams import LoopStream

log = logging.getLogger("sofamesh.tls")

TlsMode = Literal["disable", "permissive", "strict"]
DISABLE: TlsMode = "disable"
PERMISSIVE: TlsMode = "permissive"
STRICT: TlsMode = "strict"

ALPN_HTTP1 = ("http/1.1",)
ALPN_H2 = ("h2", "http/1.1")  # gRPC clients require h2 by ALPN
HANDSHAKE_TIMEOUT = 10.0  # seconds for a server connection's first byte and handshake
_HANDSHAKE_RECORD = 0x16  # TLS record type of a ClientHello (RFC 8446 §5.1)

# What identifies a peer in the endpoint metadata a data plane publishes.
META_MODE = "mtls"  # "permissive" or "strict": this endpoint takes mTLS
META_ID = "spiffe"  # the SPIFFE ID its certificate carries

Count = Callable[[str], None]
_LOST: tuple[type[Exception], ...] = (anyio.EndOfStream, *STREAM_ERRORS)
# What ends a handshake we refuse: OpenSSL's verdict, our check of the peer's ID, a lost peer.
_REFUSED: tuple[type[Exception], ...] = (
    ssl.SSLError,
    ValueError,
    anyio.EndOfStream,
    *STREAM_ERRORS,
)


def _ignore(_name: str) -> None:
    return None


class TlsContexts:
    """The `SSLContext`s of the identity in force, per role and ALPN list, rebuilt on change."""

    def __init__(self, source: IdentitySource) -> None:
        self.source = source
        self._identity = source.current()
        self._cache: dict[tuple[bool, tuple[str, ...]], ssl.SSLContext] = {}

    @property
    def identity(self) -> Identity:
        return self._identity

    def context(self, server_side: bool, alpn: tuple[str, ...]) -> ssl.SSLContext:
        identity = self.source.current()
        if identity is not self._identity:
            self._identity, self._cache = identity, {}
        ctx = self._cache.get((server_side, alpn))
        if ctx is None:
            ctx = self._cache[(server_side, alpn)] = _make_context(identity, server_side, alpn)
        return ctx

    def check_peer(self, ssl_object: Any, expected: str = "") -> str:
        """The peer's SPIFFE ID; ValueError if outside our trust domain or not `expected`."""
        uri = _uri_san(ssl_object.getpeercert())
        try:
            peer = SpiffeId.parse(uri)
        except ValueError as exc:
            raise ValueError(f"the peer's certificate carries no mesh identity: {exc}") from None
        ours = self._identity.spiffe_id.trust_domain
        if peer.trust_domain != ours:
            raise ValueError(f"{uri} is outside the trust domain {ours!r}")
        if expected and uri != expected:
            raise ValueError(f"the endpoint published {expected}, its certificate says {uri}")
        return uri


def _make_context(identity: Identity, server_side: bool, alpn: tuple[str, ...]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not server_side:
        ctx.check_hostname = False  # SPIFFE names the peer by URI SAN, checked by `check_peer`
    ctx.verify_mode = ssl.CERT_REQUIRED
    files = identity.files
    ctx.load_cert_chain(files.cert, files.key)
    ctx.load_verify_locations(cadata="".join(_pem(c) for c in identity.bundle))
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def _pem(cert: Any) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding

    return str(cert.public_bytes(Encoding.PEM).decode("ascii"))


def _uri_san(peercert: Mapping[str, Any] | None) -> str:
    uris = [v for k, v in (peercert or {}).get("subjectAltName", ()) if k == "URI"]
    return uris[0] if len(uris) == 1 else ""


def peer_identity(stream: anyio.TypedAttributeProvider) -> str:
    """The verified SPIFFE ID of `stream`'s peer, "" when the connection is not mTLS."""
    return _uri_san(stream.extra(TLSAttribute.peer_certificate, None))


def _reason(exc: BaseException) -> str:
    """What OpenSSL said, as a reader wants it: "certificate has expired", "unknown ca"..."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, anyio.EndOfStream):
        return "the peer closed the connection during the handshake"
    if isinstance(exc, anyio.BrokenResourceError) and exc.__cause__ is not None:
        return _reason(exc.__cause__)
    return str(exc) or type(exc).__name__


class SecureStream(TLSStream):
    """anyio's TLS stream, failing as our TCP streams do, so no protocol needs a TLS case.

    A peer that closed makes `send` fail with `BrokenResourceError` (anyio's
    raises `EndOfStream`, which a TCP stream never does on send), and
    `send_eof` half-closes the TCP connection under the records (anyio's
    refuses: TLS has no half-close) for the servers' lingering close. A
    `streams.time_limit` on it is one on the TCP stream below (`loop_stream`),
    and ends a wait with TimeoutError as it does there.

    `receive` reads from the TCP stream first when nothing is buffered (the
    usual case on a request/response connection), rather than asking OpenSSL,
    being told by an exception that it needs bytes, and asking again.
    """

    async def receive(self, max_bytes: int = 65536) -> bytes:
        bio = self._read_bio
        try:
            if not bio.pending and not self._ssl_object.pending():
                try:
                    bio.write(await self.transport_stream.receive())
                except anyio.EndOfStream:
                    bio.write_eof()
            return await super().receive(max_bytes)
        except anyio.BrokenResourceError as exc:
            if isinstance(exc.__cause__, TimeoutError):
                raise TimeoutError from None  # a time limit, not the peer's doing
            raise

    @property
    def loop_stream(self) -> LoopStream | None:
        """The asyncio stream whose waits a time limit bounds, if this runs over one."""
        inner = self.transport_stream
        return inner if type(inner) is LoopStream else None

    async def send(self, item: bytes) -> None:
        try:
            await super().send(item)
        except anyio.EndOfStream as exc:
            raise anyio.BrokenResourceError from exc

    async def send_eof(self) -> None:
        await self.transport_stream.send_eof()


async def _wrap(
    stream: anyio.abc.ByteStream, ctx: ssl.SSLContext, *, server_side: bool
) -> SecureStream:
    """The handshake. No close_notify exchange on close (`standard_compatible=False`): a
    mesh hop's messages are framed, so a truncation cannot pass for a whole message."""
    tls = await SecureStream.wrap(
        stream, server_side=server_side, ssl_context=ctx, standard_compatible=False
    )
    return cast(SecureStream, tls)


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
        count: Count = _ignore,
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
            except _LOST:
                await anyio.aclose_forcefully(stream)
                return None
            if first[0] != _HANDSHAKE_RECORD:
                return await self._plaintext(stream, first, peer)
            return await self._handshake(stream, first, peer)
        log.warning("%s: mTLS handshake from %s timed out; closed", self.name, peer)
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
        ctx = self.contexts.context(True, self.alpn)
        prefixed = Prefixed(stream, first)
        try:
            tls = await _wrap(prefixed, ctx, server_side=True)
            if prefixed.drained:  # the sniffed bytes were the handshake's: read the TCP stream
                tls.transport_stream = stream
            self.contexts.check_peer(tls.extra(TLSAttribute.ssl_object))
        except _REFUSED as exc:
            self._count("tls.handshake_failures")
            log.warning("%s: refused mTLS from %s: %s", self.name, peer, _reason(exc))
            await anyio.aclose_forcefully(stream)
            return None
        self._count("tls.handshakes")
        return tls

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.inner.extra_attributes


class ClientTls:
    """TLS to the endpoints that take mTLS; `expect(host, port, spiffe_id)` names them."""

    def __init__(self, contexts: TlsContexts, *, count: Count = _ignore) -> None:
        self.contexts = contexts
        self.endpoints: dict[tuple[str, int], str] = {}  # address -> its published SPIFFE ID
        self._count = count

    def expect(self, host: str, port: int, spiffe_id: str) -> None:
        self.endpoints[(host, port)] = spiffe_id

    def connector(self, alpn: tuple[str, ...]) -> Connect:
        """A `connect(host, port, timeout)` for a protocol's pool, with `alpn` on TLS."""
        return partial(self.connect, alpn)

    async def connect(
        self, alpn: tuple[str, ...], host: str, port: int, timeout: float
    ) -> anyio.abc.ByteStream:
        stream = await connect(host, port, timeout)
        expected = self.endpoints.get((host, port))
        if expected is None:
            return stream
        with anyio.move_on_after(timeout):
            return await self._handshake(stream, alpn, host, port, expected)
        await anyio.aclose_forcefully(stream)
        raise ConnectError(f"mTLS handshake with {host}:{port} timed out after {timeout:g}s")

    async def _handshake(
        self,
        stream: anyio.abc.SocketStream,
        alpn: tuple[str, ...],
        host: str,
        port: int,
        expected: str,
    ) -> SecureStream:
        ctx = self.contexts.context(False, alpn)
        try:
            tls = await _wrap(stream, ctx, server_side=False)
            self.contexts.check_peer(tls.extra(TLSAttribute.ssl_object), expected)
        except _REFUSED as exc:
            self._count("tls.client_handshake_failures")
            await anyio.aclose_forcefully(stream)
            log.warning("mTLS to %s:%d refused: %s", host, port, _reason(exc))
            raise ConnectError(f"mTLS handshake with {host}:{port} failed: {_reason(exc)}") from exc
        self._count("tls.client_handshakes")
        return tls


class MeshTls:
    """One data plane's mutual TLS: its identity, its listeners' wrap, its client's choice.

    `learn(endpoint)` reads an endpoint's registry metadata once: one that
    publishes `mtls` is called over TLS and must present the ID it published.
    """

    def __init__(self, mode: TlsMode, source: IdentitySource, *, count: Count = _ignore) -> None:
        self.mode = mode
        self.contexts = TlsContexts(source)
        self.client = ClientTls(self.contexts, count=count)
        self._count = count
        self._learned: set[Endpoint] = set()

    def listener(
        self, inner: anyio.abc.Listener[Any], alpn: tuple[str, ...], name: str
    ) -> TlsListener:
        return TlsListener(inner, self.contexts, self.mode, alpn, name=name, count=self._count)

    def meta(self) -> dict[str, str]:
        """What an endpoint served by this data plane publishes about its TLS."""
        return {META_MODE: self.mode, META_ID: str(self.contexts.source.current().spiffe_id)}

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
