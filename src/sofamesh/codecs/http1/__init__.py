"""HTTP/1.1 (RFC 9110, RFC 9112) as a sans-IO codec on h11.

h11 parses; `writer` serialises. Messages are buffered whole (`HttpRequest`,
`HttpResponse`) up to `Http1Limits.max_body_size`; the parsers already work
chunk by chunk, so a streaming API can be added beside the buffered one.

A request as it arrives (a response has a status line instead):

    +-------------------------------------------+
    | method SP request-target SP HTTP/1.1 CRLF |  request line  \\  at most
    | name ":" OWS value OWS CRLF               |  field lines    > max_header_bytes
    | ...                                       |  (max_headers) /  else 431
    | CRLF                                      |
    +-------------------------------------------+
    | body: Content-Length bytes, or chunked:   |  at most max_body_size, else 413
    |   hex-size CRLF data CRLF ... 0 CRLF CRLF |
    +-------------------------------------------+

What we send is always Content-Length framed, since the body is in hand.
"""

from sofamesh.codecs.http1.client import Http1ClientCodec
from sofamesh.codecs.http1.errors import HttpIncompleteMessage, HttpProtocolError
from sofamesh.codecs.http1.limits import DEFAULT_LIMITS, Http1Limits
from sofamesh.codecs.http1.matcher import looks_like_http1
from sofamesh.codecs.http1.messages import (
    HOP_BY_HOP,
    BodyStream,
    HeaderList,
    HttpRequest,
    HttpResponse,
    headers_from_neutral,
    headers_to_neutral,
    strip_hop_by_hop,
)
from sofamesh.codecs.http1.server import Http1ServerCodec

__all__ = [
    "DEFAULT_LIMITS",
    "HOP_BY_HOP",
    "BodyStream",
    "HeaderList",
    "Http1ClientCodec",
    "Http1Limits",
    "Http1ServerCodec",
    "HttpIncompleteMessage",
    "HttpProtocolError",
    "HttpRequest",
    "HttpResponse",
    "headers_from_neutral",
    "headers_to_neutral",
    "looks_like_http1",
    "strip_hop_by_hop",
]
