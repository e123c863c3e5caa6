"""The etcd registry's key layout and values (see etcd.py for the layout's diagram)."""

from __future__ import annotations

import json
from urllib.parse import quote, unquote

from sofamesh.endpoint import Endpoint
from sofamesh.registry.etcd_wire import b64

DEFAULT_ROOT = "/sofamesh"
MARKS = b"!withdrawn/"  # under a service's prefix: the withdrawal marks


def _segment(text: str) -> str:
    return quote(text, safe="")


class EtcdKeys:
    """The key layout of one workspace (etcd.py's docstring draws it)."""

    def __init__(self, workspace: str = "default", root: str = DEFAULT_ROOT) -> None:
        self.base = f"{root.rstrip('/')}/{_segment(workspace)}/"

    @property
    def services(self) -> bytes:
        return f"{self.base}services/".encode()

    def service(self, service: str) -> bytes:
        return f"{self.base}services/{_segment(service)}/".encode()

    def endpoint(self, ep: Endpoint) -> bytes:
        return self.service(ep.service) + _tail(ep)

    def withdrawal(self, ep: Endpoint) -> bytes:
        return self.service(ep.service) + MARKS + _tail(ep)

    def rule(self, name: str) -> bytes:
        return f"{self.base}rules/{_segment(name)}".encode()

    def service_of(self, key: bytes) -> str | None:
        rest = key[len(self.services) :]
        if not key.startswith(self.services) or b"/" not in rest:
            return None
        return unquote(rest.split(b"/", 1)[0].decode("utf-8", "replace"))


class Touched:
    """What one step of a followed prefix changed: the keys a watch reply touched, or
    `everything` after a full read (which cannot say what went)."""

    __slots__ = ("everything", "keys")

    def __init__(self) -> None:
        self.everything = False
        self.keys: set[bytes] = set()


class ServiceParts:
    """The services prefix's entries split by service, kept up to date key by key: a
    watch reply costs what it touched, not the whole registry (a process following one
    service among thousands would otherwise split every key again on every change)."""

    def __init__(self, keys: EtcdKeys) -> None:
        self.keys = keys
        self.by_service: dict[str, dict[bytes, Endpoint | str]] = {}

    def update(self, state: dict[bytes, Endpoint | str], touched: Touched) -> set[str] | None:
        """Bring the parts up to `state`: the services whose keys changed, None for all."""
        changed: set[str] | None = set()
        if touched.everything:
            changed = None
            self.by_service.clear()
            touched.keys = set(state)
        for key in touched.keys:
            name = self.keys.service_of(key)
            if name is None:
                continue
            if key in state:
                self.by_service.setdefault(name, {})[key] = state[key]
            elif (entries := self.by_service.get(name)) is not None:
                entries.pop(key, None)
                if not entries:
                    del self.by_service[name]
            if changed is not None:
                changed.add(name)
        touched.everything, touched.keys = False, set()
        return changed


def encode_endpoint(ep: Endpoint) -> bytes:
    return json.dumps(ep.to_dict(), sort_keys=True).encode()


def decode_endpoint(value: bytes) -> Endpoint | None:
    """The endpoint a value holds, or None if it is not one (written by a foreign tool)."""
    try:
        return Endpoint.from_dict(json.loads(value))
    except (ValueError, KeyError, TypeError):
        return None


def decode_entry(value: bytes) -> Endpoint | str | None:
    """An endpoint, the key a withdrawal mark names, or None (neither)."""
    try:
        data = json.loads(value)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("withdrawn"), str):
        return str(data["withdrawn"])
    return decode_endpoint(value)


def put_op(key: bytes, value: bytes, lease: int) -> dict[str, object]:
    return {"request_put": {"key": b64(key), "value": b64(value), "lease": str(lease)}}


def delete_op(key: bytes) -> dict[str, object]:
    return {"request_delete_range": {"key": b64(key)}}


def _tail(ep: Endpoint) -> bytes:
    return f"{_segment(ep.protocol)}/{ep.host}:{ep.port}".encode()


def encode_mark(ep: Endpoint) -> bytes:
    return json.dumps({"withdrawn": ep.key}).encode()
