"""A stable virtual IP per mesh service, from a configured CIDR (Istio auto-allocates 240.240/16).

An address is derived from the name alone (SHA-256, so every sidecar and every Python
agrees), and a collision moves the later name, in (slot, name) order, to the next free
address. Every sidecar that sees the same set of services assigns the same addresses;
a name only moves when a new name lands on its slot first.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable


def _slot(name: str, size: int) -> int:
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % size


def assign(names: Iterable[str], cidr: str) -> dict[str, str]:
    """name -> virtual IP for each of `names` (those past the network's capacity get none)."""
    net = ipaddress.IPv4Network(cidr, strict=False)
    size = net.num_addresses - 2  # neither the network address nor the broadcast one
    first = int(net.network_address) + 1
    order = sorted((_slot(n, size), n) for n in set(names))
    taken: set[int] = set()
    out: dict[str, str] = {}
    for slot, name in order[:size]:
        while slot in taken:
            slot = (slot + 1) % size
        taken.add(slot)
        out[name] = str(ipaddress.IPv4Address(first + slot))
    return out
