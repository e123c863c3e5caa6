"""Sniffing a shared port: HTTP/2 with prior knowledge opens with a fixed preface.

RFC 9113 §3.4: a client that knows the server speaks HTTP/2 sends
"PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n" first, which no HTTP/1.1 request can be.
"""

from __future__ import annotations

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def looks_like_h2(prefix: bytes) -> bool | None:
    """True/False once decided; None while `prefix` is too short to tell."""
    n = min(len(prefix), len(PREFACE))
    if prefix[:n] != PREFACE[:n]:
        return False
    return True if n == len(PREFACE) else None
