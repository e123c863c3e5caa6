"""The checks of the config's fields: each an attrs validator raising `ValueError` with one
message naming what was wrong, which `structure` reports under the field's dotted path.
"""

from __future__ import annotations

import ipaddress
import math
import os
from typing import Any

import attrs

from sofamesh import protocols
from sofamesh.codecs.h2.limits import MAX_FRAME_SIZE, MAX_WINDOW, MIN_FRAME_SIZE

MAX_WORKERS = 64  # worker processes of one sidecar; far past any core count it runs on


def positive(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"must be positive, got {value}")


def non_negative(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"must not be negative, got {value}")


def frame_size(_inst: Any, _attr: attrs.Attribute[Any], value: int) -> None:
    if not MIN_FRAME_SIZE <= value <= MAX_FRAME_SIZE:
        raise ValueError(f"must be within {MIN_FRAME_SIZE}..{MAX_FRAME_SIZE}, got {value}")


def window(_inst: Any, _attr: attrs.Attribute[Any], value: int) -> None:
    if not 0 < value <= MAX_WINDOW:
        raise ValueError(f"must be within 1..{MAX_WINDOW}, got {value}")


def known_protocol(_inst: object, attr: attrs.Attribute[Any], value: str) -> None:
    names = protocols.protocol_names()  # the registry's list: no protocol is imported
    if value not in names:
        raise ValueError(f"expected one of {list(names)}, got {value!r}")


def worker_count(_inst: object, _attr: attrs.Attribute[Any], value: int) -> None:
    if not 1 <= value <= MAX_WORKERS:
        raise ValueError(f"must be from 1 to {MAX_WORKERS}, got {value}")


def app_name(_inst: object, attr: attrs.Attribute[Any], value: str) -> None:
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"must be a non-empty name without spaces, got {value!r}")


def positive_finite(_inst: object, _attr: attrs.Attribute[Any], value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"must be a positive number, got {value}")


def service_patterns(_inst: object, _attr: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    for pattern in value:
        if not pattern or "*" in pattern[:-1]:
            raise ValueError(f"expected a service name or a prefix ending in *, got {pattern!r}")


def readable_file(_inst: object, _attr: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and not os.path.isfile(value):
        raise ValueError(f"no such file: {value}")


def cidr(_inst: object, _attr: attrs.Attribute[Any], value: str) -> None:
    net = ipaddress.IPv4Network(value, strict=False)  # ValueError names the bad text
    if net.num_addresses < 4:
        raise ValueError(f"must hold at least 4 addresses, got {value}")


def dns_domain(_inst: object, _attr: attrs.Attribute[Any], value: str) -> None:
    labels = value.split(".")
    if not value or any(not label or len(label) > 63 for label in labels):
        raise ValueError(f"expected a DNS domain like mesh.local, got {value!r}")
