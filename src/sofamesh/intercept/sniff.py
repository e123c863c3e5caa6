"""Which protocol a redirected connection speaks, from its first bytes.

Each decision is the protocol's own matcher (the same ones the shared listeners and the
permissive mTLS listener use): HTTP/2's preface (h2c and gRPC), an HTTP/1.x request
line, Bolt, Dubbo's magic, a TLS handshake record (passed through, never terminated).
Anything else, or a client that sends nothing first (a server-first protocol), is TCP.
"""

from __future__ import annotations

import enum
import re

from sofamesh.codecs.bolt.matcher import Match
from sofamesh.codecs.bolt.matcher import match as bolt_match
from sofamesh.codecs.dubbo.matcher import match as dubbo_match
from sofamesh.codecs.h2.matcher import looks_like_h2
from sofamesh.codecs.http1.matcher import looks_like_http1
from sofamesh.transport.tls import HANDSHAKE_RECORD


class Kind(enum.Enum):
    HTTP1 = "http"
    H2 = "h2"  # h2c with prior knowledge, gRPC
    BOLT = "bolt"
    DUBBO = "dubbo"
    TLS = "tls"
    TCP = "tcp"


_HOST = re.compile(rb"\r\nhost:[ \t]*([^\r\n]*)", re.IGNORECASE)


def classify(prefix: bytes) -> Kind | None:
    """The protocol `prefix` opens, or None while too short to tell."""
    if not prefix:
        return None
    if prefix[0] == HANDSHAKE_RECORD:
        return Kind.TLS
    undecided = False
    for kind, verdict in (
        (Kind.H2, looks_like_h2(prefix)),
        (Kind.HTTP1, looks_like_http1(prefix)),
        (Kind.BOLT, _decided(bolt_match(prefix))),
        (Kind.DUBBO, _decided(dubbo_match(prefix))),
    ):
        if verdict:
            return kind
        undecided = undecided or verdict is None
    return None if undecided else Kind.TCP


def _decided(match: Match) -> bool | None:
    return None if match is Match.NEED_MORE else match is Match.YES


def http1_host(head: bytes) -> str | None:
    """The `Host` of an HTTP/1.x request head (without its port), or None."""
    end = head.find(b"\r\n\r\n")
    found = _HOST.search(head, 0, end if end >= 0 else len(head))
    if found is None:
        return None
    host = found.group(1).strip().decode("latin-1")
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0]
