"""A redirected connection's original destination: `getsockopt(SOL_IP, SO_ORIGINAL_DST)`.

iptables' REDIRECT rewrites the destination to the sidecar's port; conntrack keeps the
address the app dialled, and Linux returns it as a `sockaddr_in` (netfilter_ipv4.h).
IPv4 only: the init rules install no ip6tables rules.
"""

from __future__ import annotations

import socket
from typing import Any

import anyio.abc

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h
_SOCKADDR_IN = 16


def original_destination(stream: Any) -> tuple[str, int] | None:
    """The (host, port) `stream`'s peer dialled, or None (not a TCP/IPv4 socket, not tracked)."""
    sock = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
    if sock is None or sock.family != socket.AF_INET:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, _SOCKADDR_IN)
    except OSError:  # no conntrack entry: the connection was never seen by netfilter
        return None
    return socket.inet_ntoa(raw[4:8]), int.from_bytes(raw[2:4], "big")


def was_redirected(stream: Any, original: tuple[str, int] | None) -> bool:
    """Whether `original` differs from where the connection was accepted (a direct dial
    of the transparent port itself must not be relayed back to that port)."""
    if original is None:
        return False
    local = stream.extra(anyio.abc.SocketAttribute.local_address, None)
    return local is None or tuple(local[:2]) != original
