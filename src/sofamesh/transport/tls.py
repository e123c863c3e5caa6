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
- `SecureStream`: the TLS stream every secured connection is, failing as a
  TCP stream does.
- `ClientTls`: the connect function of a protocol's pool: TLS to the
  addresses whose registry metadata says they take mTLS, plain TCP elsewhere.
- `peer_identity(stream)`: the verified SPIFFE ID of a server connection's
  peer, "" on plaintext; servers read it once per connection. It lives in
  `tls_names.py` with the modes and ALPN lists, which a mesh without TLS
  names too; this module offers them as well.

The listener side (`TlsListener`, and `MeshTls`, a data plane's whole TLS) is
in `tls_listener.py`.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.abc
from anyio.streams.tls import TLSAttribute, TLSStream

from sofamesh.security.spiffe import SpiffeId
from sofamesh.transport.errors import ConnectError
from sofamesh.transport.net import STREAM_ERRORS, Connect, connect
from sofamesh.transport.streams import LoopStream
from sofamesh.transport.tls_names import ALPN_H2 as ALPN_H2
from sofamesh.transport.tls_names import ALPN_HTTP1 as ALPN_HTTP1
from sofamesh.transport.tls_names import DISABLE as DISABLE
from sofamesh.transport.tls_names import HANDSHAKE_RECORD as HANDSHAKE_RECORD
from sofamesh.transport.tls_names import HANDSHAKE_TIMEOUT as HANDSHAKE_TIMEOUT
from sofamesh.transport.tls_names import META_ID as META_ID
from sofamesh.transport.tls_names import META_MODE as META_MODE
from sofamesh.transport.tls_names import PERMISSIVE as PERMISSIVE
from sofamesh.transport.tls_names import STRICT as STRICT
from sofamesh.transport.tls_names import TlsMode as TlsMode
from sofamesh.transport.tls_names import peer_identity as peer_identity
from sofamesh.transport.tls_names import uri_san

if TYPE_CHECKING:  # identities (and datetime) load with the first TLS config: runtime.py
    from sofamesh.security.identity import Identity, IdentitySource

log = logging.getLogger("sofamesh.tls")

Count = Callable[[str], None]
LOST: tuple[type[Exception], ...] = (anyio.EndOfStream, *STREAM_ERRORS)
# What ends a handshake we refuse: OpenSSL's verdict, our check of the peer's ID, a lost peer.
REFUSED: tuple[type[Exception], ...] = (
    ssl.SSLError,
    ValueError,
    anyio.EndOfStream,
    *STREAM_ERRORS,
)


def count_nothing(_name: str) -> None:
    return None


class TlsContexts:
    """The `SSLContext`s of the identity in force, per role and ALPN list, rebuilt on change."""

    def __init__(self, source: IdentitySource) -> None:
        self.source = source
        self._identity = source.loaded  # None until a pending source has an identity
        self._cache: dict[tuple[bool, tuple[str, ...]], ssl.SSLContext] = {}

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
        uri = uri_san(ssl_object.getpeercert())
        try:
            peer = SpiffeId.parse(uri)
        except ValueError as exc:
            raise ValueError(f"the peer's certificate carries no mesh identity: {exc}") from None
        ours = self.source.current().spiffe_id.trust_domain
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
    load_chain(ctx, identity)
    ctx.load_verify_locations(cadata="".join(_pem(c) for c in identity.bundle))
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def load_chain(ctx: ssl.SSLContext, identity: Identity) -> None:
    """Load the certificate chain and key `identity` was checked with, from memory.

    `ssl` reads a chain only from a path, and the identity's files may be half rewritten
    by a renewal (the key already new, the certificate not yet): a context made then
    would fail every handshake with "key values mismatch". So the bytes read with the
    identity go to an anonymous memory file (Linux's memfd: the key never touches a
    disk), or elsewhere to a private temporary file removed at once.
    """
    if not identity.chain_pem:  # an identity made by hand, not read from files
        ctx.load_cert_chain(identity.files.cert, identity.files.key)
        return
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("sofamesh-identity", os.MFD_CLOEXEC)
        try:
            _write_all(fd, identity.chain_pem)
            ctx.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    import tempfile  # here: it brings shutil, bz2 and lzma, which a mesh without TLS never needs

    with tempfile.TemporaryDirectory(prefix="sofamesh-tls-") as d:  # mode 0700
        path = os.path.join(d, "identity.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_all(fd, identity.chain_pem)
        finally:
            os.close(fd)
        ctx.load_cert_chain(path)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _pem(cert: Any) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding

    return str(cert.public_bytes(Encoding.PEM).decode("ascii"))


def refusal_reason(exc: BaseException) -> str:
    """What OpenSSL said, as a reader wants it: "certificate has expired", "unknown ca"..."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, anyio.EndOfStream):
        return "the peer closed the connection during the handshake"
    if isinstance(exc, anyio.BrokenResourceError) and exc.__cause__ is not None:
        return refusal_reason(exc.__cause__)
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
    being told by an exception that it needs bytes, and asking again; `send`
    encrypts and writes in one step. Anything unusual (a partial record, an
    alert, a closed peer) takes anyio's general path.
    """

    async def receive(self, max_bytes: int = 65536) -> bytes:
        ssl_object, bio = self._ssl_object, self._read_bio
        if not self._broken:
            if not bio.pending and not ssl_object.pending():
                try:
                    bio.write(await self.transport_stream.receive())
                except anyio.EndOfStream:
                    bio.write_eof()
            try:
                data = ssl_object.read(max_bytes)
            except ssl.SSLError:
                pass  # a partial record, an alert, the end: anyio's path below sorts it out
            else:
                if data:
                    if self._write_bio.pending:  # OpenSSL's answer to a key update, say
                        await self._flush_write_bio()
                    return data
        try:
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
        if not self._broken and not self._write_bio.pending:
            try:
                self._ssl_object.write(item)  # into a memory BIO: all of it, or an error
            except ssl.SSLError:
                pass  # closed or broken: anyio's path below says how
            else:
                await self._flush_write_bio()
                return
        try:
            await super().send(item)
        except anyio.EndOfStream as exc:
            raise anyio.BrokenResourceError from exc

    async def send_eof(self) -> None:
        await self.transport_stream.send_eof()


async def handshake(
    stream: anyio.abc.ByteStream, ctx: ssl.SSLContext, *, server_side: bool
) -> SecureStream:
    """The handshake. No close_notify exchange on close (`standard_compatible=False`): a
    mesh hop's messages are framed, so a truncation cannot pass for a whole message."""
    tls = await SecureStream.wrap(
        stream, server_side=server_side, ssl_context=ctx, standard_compatible=False
    )
    return cast(SecureStream, tls)


class ClientTls:
    """TLS to the endpoints that take mTLS; `expect(host, port, spiffe_id)` names them."""

    def __init__(self, contexts: TlsContexts, *, count: Count = count_nothing) -> None:
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
        try:
            ctx = self.contexts.context(False, alpn)
            tls = await handshake(stream, ctx, server_side=False)
            self.contexts.check_peer(tls.extra(TLSAttribute.ssl_object), expected)
        except REFUSED as exc:
            self._count("tls.client_handshake_failures")
            await anyio.aclose_forcefully(stream)
            log.warning("mTLS to %s:%d refused: %s", host, port, refusal_reason(exc))
            raise ConnectError(
                f"mTLS handshake with {host}:{port} failed: {refusal_reason(exc)}"
            ) from exc
        self._count("tls.client_handshakes")
        return tls
