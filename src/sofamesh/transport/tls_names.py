"""What TLS's users name without running it: modes, ALPN lists, metadata keys, the peer's ID.

A sidecar without `tls:` still names these: its HTTP/1.1 server reads each
connection's peer identity ("" on plaintext), its pools offer ALPN lists and
its listeners tell a TLS ClientHello by its first byte. The contexts, the
wraps and the handshakes (`tls.py`, `tls_listener.py`) load with the first
TLS config; `tls.py` offers every name here as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import anyio
from anyio.streams.tls import TLSAttribute

from sofamesh.transport.streams import LoopStream

TlsMode = Literal["disable", "permissive", "strict"]
DISABLE: TlsMode = "disable"
PERMISSIVE: TlsMode = "permissive"
STRICT: TlsMode = "strict"

ALPN_HTTP1 = ("http/1.1",)
ALPN_H2 = ("h2", "http/1.1")  # gRPC clients require h2 by ALPN
HANDSHAKE_TIMEOUT = 10.0  # seconds for a server connection's first byte and handshake
HANDSHAKE_RECORD = 0x16  # TLS record type of a ClientHello (RFC 8446 §5.1)

# What identifies a peer in the endpoint metadata a data plane publishes.
META_MODE = "mtls"  # "permissive" or "strict": this endpoint takes mTLS
META_ID = "spiffe"  # the SPIFFE ID its certificate carries


def uri_san(peercert: Mapping[str, Any] | None) -> str:
    """The one URI SAN of a peer certificate (its SPIFFE ID), "" unless exactly one."""
    uris = [v for k, v in (peercert or {}).get("subjectAltName", ()) if k == "URI"]
    return uris[0] if len(uris) == 1 else ""


def peer_identity(stream: anyio.TypedAttributeProvider) -> str:
    """The verified SPIFFE ID of `stream`'s peer, "" when the connection is not mTLS."""
    if type(stream) is LoopStream:  # plaintext on asyncio: spare it the attribute look-up
        return ""
    return uri_san(stream.extra(TLSAttribute.peer_certificate, None))
