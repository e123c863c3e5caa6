"""HTTP/1.1 strictness through a real sidecar process: every malformed request is refused.

A table of raw requests goes, one connection each, to the inbound listener of
`python -m sofamesh.sidecar`, whose app is a raw TCP server recording what it
receives (`raw_http.RecordingUpstream`). For every case the app receives exactly
one well-framed request or none; a malformed case gets its error status (400 for
almost all) and the connection closed, as Envoy answers them; the valid controls
pass with the target the app must see (normalised).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
from raw_http import RecordingUpstream, exchange, recording_upstream

from sofamesh.demo.procs import Procs

pytestmark = pytest.mark.anyio

SERVICE = "svc"
HEAD = b"Host: svc\r\nx-sofamesh-service: svc\r\n"


@attrs.frozen
class Case:
    name: str
    data: bytes
    status: int  # what the client must get
    target: str | None = None  # for 200: the target the app must receive
    absent: bytes = b""  # for 200: a header the app must not receive


def get(target: bytes, extra: bytes = b"", line: bytes = b"GET") -> bytes:
    return line + b" " + target + b" HTTP/1.1\r\n" + HEAD + extra + b"\r\n"


def post(fields: bytes, body: bytes, version: bytes = b"1.1") -> bytes:
    return b"POST /p HTTP/" + version + b"\r\n" + HEAD + fields + b"\r\n" + body


SMUGGLED = b"GET /smuggled HTTP/1.1\r\n" + HEAD + b"\r\n"
CHUNKED = b"Transfer-Encoding: chunked\r\n"

VALID = [
    Case("plain get", get(b"/orders/1"), 200, "/orders/1"),
    Case("query kept as is", get(b"/a?x=%2F..//&y=%41"), 200, "/a?x=%2F..//&y=%41"),
    Case("post with length", post(b"Content-Length: 5\r\n", b"hello"), 200, "/p"),
    Case("chunked post", post(CHUNKED, b"5\r\nhello\r\n0\r\n\r\n"), 200, "/p"),
    Case("chunk extension", post(CHUNKED, b"5;a=b\r\nhello\r\n0\r\n\r\n"), 200, "/p"),
    Case("chunked trailers", post(CHUNKED, b"1\r\nx\r\n0\r\nT: 1\r\n\r\n"), 200, "/p"),
    Case("http/1.0", b"GET /old HTTP/1.0\r\n" + HEAD + b"\r\n", 200, "/old"),
    Case("tab in value", get(b"/t", b"X-A: a\tb\r\n"), 200, "/t"),
    Case("obs-text in value", get(b"/o", b"X-A: caf\xe9\r\n"), 200, "/o"),
    Case("ows around length", post(b"Content-Length:  2 \r\n", b"ok"), 200, "/p"),
    Case("connection close", get(b"/c", b"Connection: close\r\n"), 200, "/c"),
    Case("options star", get(b"*", line=b"OPTIONS"), 200, "*"),
    Case("absolute form", get(b"http://svc/orders/export"), 200, "/orders/export"),
    Case("absolute form no path", get(b"http://svc?q=1"), 200, "/?q=1"),
    Case("double slash", get(b"//orders//export"), 200, "/orders/export"),
    Case("dot segment", get(b"/orders/./export"), 200, "/orders/export"),
    Case("dot dot segment", get(b"/orders/x/../export"), 200, "/orders/export"),
    Case("dot dot above root", get(b"/../../orders"), 200, "/orders"),
    Case("escaped unreserved", get(b"/orders/%65xport"), 200, "/orders/export"),
    Case("escaped dots", get(b"/orders/x/%2e%2E/export"), 200, "/orders/export"),
    Case("escaped reserved kept", get(b"/a%3fb%20c"), 200, "/a%3Fb%20c"),
    Case("backslash", get(b"/orders\\export"), 200, "/orders/export"),
    Case("trailing dot", get(b"/orders/."), 200, "/orders/"),
    Case(
        "connection option stripped",
        get(b"/h", b"Connection: x-secret\r\nX-Secret: 1\r\n"),
        200,
        "/h",
        b"x-secret",
    ),
    Case("keep-alive header stripped", get(b"/k", b"Keep-Alive: 5\r\n"), 200, "/k", b"keep-alive"),
]

MALFORMED = [
    # Content-Length and Transfer-Encoding together (RFC 9112 §6.3: close)
    Case("cl then te", post(b"Content-Length: 5\r\n" + CHUNKED, b"0\r\n\r\n" + SMUGGLED), 400),
    Case("te then cl", post(CHUNKED + b"Content-Length: 5\r\n", b"0\r\n\r\n" + SMUGGLED), 400),
    Case(
        "cl and te list",
        post(b"Content-Length: 3\r\nTransfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"),
        400,
    ),
    Case(
        "cl and te uppercase",
        post(b"content-length: 5\r\nTRANSFER-ENCODING: CHUNKED\r\n", b"0\r\n\r\n"),
        400,
    ),
    # obs-fold (RFC 9112 §5.2)
    Case("folded te", post(b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n"), 400),
    Case("folded te tab", post(b"Transfer-Encoding:\r\n\tchunked\r\n", b"0\r\n\r\n"), 400),
    Case("folded cl", post(b"Content-Length:\r\n 5\r\n", b"hello"), 400),
    Case("folded other", get(b"/f", b"X-A: a\r\n b\r\n"), 400),
    Case("fold after request line", b"GET / HTTP/1.1\r\n X: 1\r\n" + HEAD + b"\r\n", 400),
    Case(
        "cl and folded te",
        post(b"Content-Length: 5\r\nTransfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n"),
        400,
    ),
    # Content-Length repeated, listed or invalid
    Case("two equal lengths", post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"), 400),
    Case("two lengths", post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"), 400),
    Case("length list", post(b"Content-Length: 5, 5\r\n", b"hello"), 400),
    Case("length list unequal", post(b"Content-Length: 5, 6\r\n", b"hello!"), 400),
    Case("length plus", post(b"Content-Length: +5\r\n", b"hello"), 400),
    Case("length minus", post(b"Content-Length: -5\r\n", b"hello"), 400),
    Case("length hex", post(b"Content-Length: 0x5\r\n", b"hello"), 400),
    Case("length suffix", post(b"Content-Length: 5a\r\n", b"hello"), 400),
    Case("length empty", post(b"Content-Length:\r\n", b""), 400),
    Case("length inner space", post(b"Content-Length: 1 2\r\n", b"x" * 12), 400),
    # control characters in values (RFC 9110 §5.5)
    Case("nul in value", get(b"/", b"X-A: a\x00b\r\n"), 400),
    Case("soh in value", get(b"/", b"X-A: a\x01b\r\n"), 400),
    Case("bel in value", get(b"/", b"X-A: a\x07b\r\n"), 400),
    Case("vt in value", get(b"/", b"X-A: a\x0bb\r\n"), 400),
    Case("ff in value", get(b"/", b"X-A: a\x0cb\r\n"), 400),
    Case("esc in value", get(b"/", b"X-A: a\x1bb\r\n"), 400),
    Case("del in value", get(b"/", b"X-A: a\x7fb\r\n"), 400),
    Case("bare cr in value", get(b"/", b"X-A: a\rb\r\n"), 400),
    Case(
        "control in host",
        b"GET / HTTP/1.1\r\nHost: s\x01vc\r\nx-sofamesh-service: svc\r\n\r\n",
        400,
    ),
    # methods: uppercase tokens only
    Case("lowercase method", get(b"/", line=b"get"), 400),
    Case("mixed case method", get(b"/", line=b"Get"), 400),
    Case("lowercase post", b"post /p HTTP/1.1\r\n" + HEAD + b"Content-Length: 0\r\n\r\n", 400),
    Case("method with paren", get(b"/", line=b"GE(T"), 400),
    Case("method with slash", get(b"/", line=b"GE/T"), 400),
    Case("empty method", get(b"/", line=b""), 400),
    # versions other than HTTP/1.0 and 1.1
    Case("http/2.0 line", b"GET / HTTP/2.0\r\n" + HEAD + b"\r\n", 400),
    Case("http/1.2", b"GET / HTTP/1.2\r\n" + HEAD + b"\r\n", 400),
    Case("http/0.9", b"GET / HTTP/0.9\r\n" + HEAD + b"\r\n", 400),
    Case("http/3", b"GET / HTTP/3\r\n" + HEAD + b"\r\n", 400),
    Case("lowercase version", b"GET / http/1.1\r\n" + HEAD + b"\r\n", 400),
    Case("version 1.10", b"GET / HTTP/1.10\r\n" + HEAD + b"\r\n", 400),
    Case("no version", b"GET /\r\n" + HEAD + b"\r\n", 400),
    Case("double space", b"GET  / HTTP/1.1\r\n" + HEAD + b"\r\n", 400),
    Case("tab separator", b"GET\t/ HTTP/1.1\r\n" + HEAD + b"\r\n", 400),
    Case("trailing space", b"GET / HTTP/1.1 \r\n" + HEAD + b"\r\n", 400),
    # request-target forms (RFC 9112 §3.2)
    Case("authority form", get(b"svc:80"), 400),
    Case("star with get", get(b"*"), 400),
    Case("relative target", get(b"orders/1"), 400),
    Case("userinfo", get(b"http://u@svc/x"), 400),
    Case("ftp scheme", get(b"ftp://svc/x"), 400),
    Case("scheme without slashes", get(b"http:/x"), 400),
    Case("fragment", get(b"/a#b"), 400),
    Case("bad escape", get(b"/a%zz"), 400),
    Case("short escape", get(b"/a%2"), 400),
    Case("escaped slash", get(b"/orders%2Fexport"), 400),
    Case("escaped slash lower", get(b"/orders%2fexport"), 400),
    Case("escaped backslash", get(b"/orders%5Cexport"), 400),
    # Transfer-Encoding that is not exactly chunked
    Case("te gzip chunked", post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"), 501),
    Case("te identity", post(b"Transfer-Encoding: identity\r\n", b""), 501),
    Case("te in http/1.0", post(CHUNKED, b"0\r\n\r\n", b"1.0"), 400),
    # chunk framing
    Case("chunk size too long", post(CHUNKED, b"0" * 30 + b"5\r\nhello\r\n0\r\n\r\n"), 400),
    Case(
        "chunk extension too long",
        post(CHUNKED, b"5;" + b"a" * 5000 + b"\r\nhello\r\n0\r\n\r\n"),
        400,
    ),
    Case("chunk size not hex", post(CHUNKED, b"zz\r\nhello\r\n0\r\n\r\n"), 400),
    Case("chunk size negative", post(CHUNKED, b"-5\r\nhello\r\n0\r\n\r\n"), 400),
    Case("chunk data too long", post(CHUNKED, b"3\r\nhello\r\n0\r\n\r\n"), 400),
    # field syntax
    Case("space before colon", get(b"/", b"X-A : 1\r\n"), 400),
    Case("space in name", get(b"/", b"X A: 1\r\n"), 400),
    Case("empty name", get(b"/", b": 1\r\n"), 400),
    Case("no colon", get(b"/", b"X-A\r\n"), 400),
    Case("bare lf", b"GET / HTTP/1.1\nHost: svc\nx-sofamesh-service: svc\n\n", 400),
    Case("bare lf in fields", b"GET / HTTP/1.1\r\nHost: svc\nx-sofamesh-service: svc\r\n\r\n", 400),
    Case("two hosts", get(b"/", b"Host: other\r\n"), 400),
    Case("no host", b"GET / HTTP/1.1\r\nx-sofamesh-service: svc\r\n\r\n", 400),
    Case("nul in target", get(b"/a\x00b"), 400),
    Case("high byte in target", get(b"/a\xffb"), 400),
    Case("connect", b"CONNECT svc:443 HTTP/1.1\r\n" + HEAD + b"\r\n", 501),
    Case("too many fields", get(b"/", b"".join(b"X-%d: 1\r\n" % i for i in range(120))), 431),
]

CASES = VALID + MALFORMED


def test_the_table_is_large_enough() -> None:
    assert len(MALFORMED) >= 75 and len({c.name for c in CASES}) == len(CASES)


@asynccontextmanager
async def sidecar_in_front(
    tmp: Path, backend: str
) -> AsyncIterator[tuple[RecordingUpstream, dict[str, Any]]]:
    async with recording_upstream() as (upstream, port), Procs(tmp, backend) as procs:
        inbound = {
            "protocol": "http",
            "listen": "127.0.0.1:0",
            "upstream": f"127.0.0.1:{port}",
            "services": [SERVICE],
        }
        config = {"app": "strict", "registry": f"file://{tmp}/reg", "inbound": [inbound]}
        yield upstream, await procs.sidecar("strict", config)


async def run_case(case: Case, address: str, upstream: RecordingUpstream) -> str:
    """'' if the case behaved, else what went wrong."""
    before = len(upstream.requests)
    try:
        seen = await exchange(address, case.data, wait_close=case.status != 200)
    except TimeoutError:
        return f"no answer or no close; app got {[r.target for r in upstream.requests[before:]]}"
    got = upstream.requests[before:]
    status = seen.response.status if seen.response else None
    if upstream.errors:
        return f"the app could not frame what it got: {upstream.errors}"
    if status != case.status:
        return f"status {status}, app got {[r.target for r in got]}"
    if case.status != 200:
        return "" if seen.closed and not got else f"closed={seen.closed}, app got {len(got)}"
    if len(got) != 1 or got[0].target != case.target:
        return f"app got {[r.target for r in got]}"
    if case.absent and any(k == case.absent for k, _ in got[0].headers):
        return f"{case.absent!r} was forwarded"
    return ""


async def test_every_case_through_a_sidecar_process(tmp_path: Path, anyio_backend: str) -> None:
    async with sidecar_in_front(tmp_path, anyio_backend) as (upstream, ready):
        failures = {}
        for case in CASES:
            failure = await run_case(case, ready["inbound[0]"], upstream)
            if failure:
                failures[case.name] = failure
        assert failures == {}
        assert len(upstream.requests) == len(VALID)  # nothing smuggled, nothing doubled
