"""Dubbo's ZooKeeper layout: where each node of a workspace lives, and what it holds."""

from __future__ import annotations

import socket
from collections.abc import Sequence

from sofamesh.endpoint import Endpoint
from sofamesh.registry.dubbo_url import (
    interface_of,
    java_url_decode,
    java_url_encode,
    service_key,
    url_to_endpoint,
)

CATEGORIES = ("providers", "consumers", "routers", "configurators")


class ZooKeeperPaths:
    """The node layout of one workspace (zookeeper.py's docstring draws it)."""

    def __init__(self, workspace: str = "default") -> None:
        self.root = "/dubbo" if workspace == "default" else f"/{workspace}"

    def service(self, service: str) -> str:
        # A Dubbo service key (group/interface:version) lives under its interface.
        return f"{self.root}/{java_url_encode(interface_of(service))}"

    def category(self, service: str, category: str) -> str:
        return f"{self.service(service)}/{category}"

    def node(self, service: str, category: str, url: str) -> str:
        return f"{self.category(service, category)}/{java_url_encode(url)}"

    def document(self, name: str) -> str:
        return f"{self.root}/config/sofamesh/{java_url_encode(name)}"


def decode_providers(children: Sequence[str]) -> frozenset[Endpoint]:
    """The endpoints the node names under `providers/` describe (others are skipped)."""
    found: set[Endpoint] = set()
    for child in children:
        try:
            found.add(url_to_endpoint(java_url_decode(child)))
        except ValueError:
            continue  # not a provider URL (a foreign tool's node): not an endpoint
    return frozenset(found)


def service_name(ep: Endpoint) -> str:
    """The name the mesh calls a provider's service by: a Dubbo provider's service key
    (`group/interface:version`, its node lives under the interface), else its own."""
    if ep.protocol != "dubbo":
        return ep.service  # a Bolt `interface:version` is in the URL whole
    return service_key(ep.service, ep.version, dict(ep.meta).get("group", ""))


def document_text(value: object) -> str | None:
    """The text of a `get` answer, (data, stat), or None for a missing node."""
    if not isinstance(value, tuple):
        return None
    return bytes(value[0] or b"").decode("utf-8", "replace")


def local_address(server: tuple[str, int]) -> str:
    """The local address we reach `server` from (for consumer URLs); no packet is sent."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(server)
            return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"
