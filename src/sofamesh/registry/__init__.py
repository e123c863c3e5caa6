"""Service discovery backends behind one `Registry` protocol; `open_registry(url)` picks one.

| URL | backend |
|---|---|
| `memory://` | one process (tests, embedded use) |
| `file:///var/tmp/sofamesh` | the embedded default: processes of one host share a directory |
| `etcd://host:2379[,host:2379]?workspace=W` | etcd v3 (JSON gateway), with a local snapshot file |
| `zookeeper://host:2181[,...]?workspace=W` | ZooKeeper, Dubbo's layout, local snapshot file |

docs/registries.md documents the networked registries' options and layouts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from sofamesh.registry.base import OpenedRegistry, Registry, RegistryError, Snapshot
from sofamesh.registry.file import FileRegistry
from sofamesh.registry.memory import MemoryHub, MemoryRegistry

if TYPE_CHECKING:
    from sofamesh.registry.etcd import EtcdRegistry
    from sofamesh.registry.resilient import NetworkOptions
    from sofamesh.registry.snapshot import SnapshotRegistry

__all__ = [
    "EtcdRegistry",
    "FileRegistry",
    "MemoryHub",
    "MemoryRegistry",
    "OpenedRegistry",
    "Registry",
    "RegistryError",
    "Snapshot",
    "SnapshotRegistry",
    "open_registry",
    "validate_registry_url",
]


def __getattr__(name: str) -> Any:
    # etcd's client is about 1 MB of a process's memory: only a mesh on etcd loads it
    if name == "EtcdRegistry":
        from sofamesh.registry.etcd import EtcdRegistry

        return EtcdRegistry
    # The snapshot wrapper serves only the networked registries: it loads with the first.
    if name == "SnapshotRegistry":
        from sofamesh.registry.snapshot import SnapshotRegistry

        return SnapshotRegistry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The networked registries' schemes (`resilient.NETWORK_SCHEMES` holds their options): their
# URL parsing, reconciliation and snapshot file load with the first such URL.
NETWORK_SCHEMES = ("etcd", "zookeeper")
SCHEMES = ("memory", "file", *NETWORK_SCHEMES)


# The options of the embedded registries, with their defaults (seconds).
LOCAL_OPTIONS: dict[str, dict[str, float]] = {
    "memory": {},
    "file": {"lease": 10.0, "poll": 0.2},
}


def validate_registry_url(url: str) -> str | None:
    """Why `url` is not a registry URL we can open, or None if it is fine."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        return f"unknown registry scheme {parts.scheme!r} (expected one of {', '.join(SCHEMES)})"
    if parts.scheme == "file" and not parts.path:
        return "file:// registry needs a directory, e.g. file:///var/tmp/sofamesh"
    try:
        if parts.scheme in NETWORK_SCHEMES:
            from sofamesh.registry.resilient import parse_network_url

            parse_network_url(url)
        else:
            local_options(url)
    except ValueError as e:
        return str(e)
    return None


def local_options(url: str) -> dict[str, float]:
    """The options of a `memory://` or `file://` URL; ValueError naming every problem."""
    parts = urlsplit(url)
    defaults = LOCAL_OPTIONS[parts.scheme]
    problems: list[str] = []
    values = dict(defaults)
    for key, text in parse_qsl(parts.query, keep_blank_values=True):
        if key not in defaults:
            known = ", ".join(defaults) or "none"
            problems.append(f"unknown option {key!r} (known: {known})")
            continue
        try:
            value = float(text)
        except ValueError:
            problems.append(f"{key}: not a number: {text!r}")
            continue
        if not 0 < value < 86400:  # also refuses nan and inf
            problems.append(f"{key}: must be a positive number of seconds, got {text}")
        values[key] = value
    if problems:
        raise ValueError(f"{parts.scheme} registry URL: " + "; ".join(problems))
    return values


def open_registry(url: str) -> OpenedRegistry:
    """The registry for `url`, as an async context manager owning its background work."""
    problem = validate_registry_url(url)
    if problem:
        raise ValueError(problem)
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return MemoryRegistry()
    if parts.scheme in NETWORK_SCHEMES:
        from sofamesh.registry.resilient import parse_network_url

        return open_network_registry(parse_network_url(url))
    opts = local_options(url)
    return FileRegistry(parts.path, lease=opts["lease"], poll_interval=opts["poll"])


def open_network_registry(options: NetworkOptions) -> OpenedRegistry:
    """An etcd or ZooKeeper registry, wrapped to keep a local snapshot unless told not to."""
    inner: OpenedRegistry
    if options.scheme == "etcd":
        from sofamesh.registry.etcd import EtcdRegistry

        inner = EtcdRegistry(
            options.hosts,
            workspace=options.workspace,
            root=options.root or "/sofamesh",
            lease_ttl=max(1, round(options.ttl)),
            timeout=options.timeout,
        )
    else:
        from sofamesh.registry.zookeeper import ZooKeeperRegistry  # kazoo is an optional extra

        inner = ZooKeeperRegistry(
            options.hosts,
            workspace=options.workspace,
            session_timeout=options.ttl,
            timeout=options.timeout,
        )
    if options.snapshot is None:
        return inner
    from sofamesh.registry.snapshot import SnapshotRegistry

    return SnapshotRegistry(inner, options.snapshot, cold_start_wait=options.cold_start_wait)
