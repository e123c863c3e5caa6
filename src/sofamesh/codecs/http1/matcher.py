"""Sniffing: does a connection's first bytes look like an HTTP/1.x request?

A listener shared by several protocols peeks at the first bytes and hands the
connection to the codec that claims them. An HTTP/1.x request starts with a
method token and a space (RFC 9112 §3); SOFA Bolt, Dubbo and HTTP/2's
preface ("PRI * HTTP/2.0") start otherwise.
"""

from __future__ import annotations

import re

_METHOD_SP = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]{1,32} ")
_H2_PREFACE = b"PRI * HTTP/2.0"


def looks_like_http1(prefix: bytes) -> bool | None:
    """True/False once decided; None while `prefix` is too short to tell."""
    if _H2_PREFACE.startswith(prefix[: len(_H2_PREFACE)]):
        return None if len(prefix) < len(_H2_PREFACE) else False
    match = _METHOD_SP.match(prefix)
    if match is not None:
        return True
    if len(prefix) < 33 and re.fullmatch(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]*", prefix):
        return None  # still a possible method token
    return False
