"""etcd v3 JSON gateway messages, sans-IO: request bodies out, typed replies in.

etcd 3.4 serves its gRPC API as JSON over HTTP/1.1 under `/v3/` (grpc-gateway).
The encoding is protobuf's JSON mapping (https://protobuf.dev/programming-guides/json/):

- `bytes` fields (key, value, range_end) are base64;
- 64-bit integers (revision, lease ID, TTL) are JSON strings, though numbers are
  accepted on input;
- fields at their zero value are omitted: a PUT event has no `type`, a lease
  that no longer exists answers a keepalive without `TTL`;
- streaming replies (`/v3/watch`, `/v3/lease/keepalive`) are one JSON object per
  line, each wrapped as `{"result": {...}}`, or `{"error": {...}}` when the
  stream fails; a unary failure is a non-200 answer with
  `{"error", "message", "code"}` (a gRPC status code).

Reference: etcd api/etcdserverpb/rpc.proto and mvccpb/kv.proto.
"""

from __future__ import annotations

import base64
import enum
import json
from collections.abc import Mapping
from typing import Any

import attrs

from sofamesh.registry.base import RegistryError

# gRPC status codes etcd answers with (grpc/codes): what they mean to a client.
GRPC_NOT_FOUND = 5  # e.g. "requested lease not found"
GRPC_UNAVAILABLE = 14  # no leader, or the member is stopping: try another endpoint


class EtcdError(RegistryError):
    """etcd answered with an error status (`code` is the gRPC status code)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"etcd error {code}: {message}")
        self.code = code
        self.message = message


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def prefix_end(prefix: bytes) -> bytes:
    """The `range_end` that selects every key starting with `prefix` (clientv3's
    GetPrefixRangeEnd): the prefix with its last byte below 0xff incremented and
    what follows dropped; `b"\\0"` (every key from `prefix` on) if all are 0xff."""
    for i in range(len(prefix) - 1, -1, -1):
        if prefix[i] < 0xFF:
            return prefix[:i] + bytes([prefix[i] + 1])
    return b"\0"


def _int(obj: Mapping[str, Any], name: str) -> int:
    value = obj.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RegistryError(f"etcd: {name} is not an integer: {value!r}")
    try:
        return int(value)
    except ValueError:
        raise RegistryError(f"etcd: {name} is not an integer: {value!r}") from None


# -- requests ---------------------------------------------------------------------------------


def put_request(key: bytes, value: bytes, lease: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = {"key": b64(key), "value": b64(value)}
    if lease:
        body["lease"] = str(lease)
    return body


def range_request(key: bytes, *, prefix: bool = False, revision: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = {"key": b64(key)}
    if prefix:
        body["range_end"] = b64(prefix_end(key))
    if revision:
        body["revision"] = str(revision)
    return body


def delete_request(key: bytes, *, prefix: bool = False) -> dict[str, Any]:
    return range_request(key, prefix=prefix)


def watch_create_request(key: bytes, start_revision: int, *, prefix: bool = True) -> dict[str, Any]:
    req: dict[str, Any] = {"key": b64(key), "start_revision": str(start_revision)}
    if prefix:
        req["range_end"] = b64(prefix_end(key))
    return {"create_request": req}


# -- replies ----------------------------------------------------------------------------------


@attrs.frozen
class KeyValue:
    """mvccpb.KeyValue; `value` is empty in DELETE events."""

    key: bytes
    value: bytes = b""
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    lease: int = 0


class EventType(enum.Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@attrs.frozen
class Event:
    type: EventType
    kv: KeyValue


@attrs.frozen
class WatchResponse:
    """One message of a watch stream (etcdserverpb.WatchResponse)."""

    revision: int  # the store's revision when this message was sent
    watch_id: int = 0
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0  # set when start_revision was compacted away
    cancel_reason: str = ""
    events: tuple[Event, ...] = ()


def parse_kv(obj: Mapping[str, Any]) -> KeyValue:
    try:
        return KeyValue(
            key=unb64(obj["key"]),
            value=unb64(obj.get("value", "")),
            create_revision=_int(obj, "create_revision"),
            mod_revision=_int(obj, "mod_revision"),
            version=_int(obj, "version"),
            lease=_int(obj, "lease"),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise RegistryError(f"etcd: malformed key-value {obj!r}: {e}") from None


def header_revision(reply: Mapping[str, Any]) -> int:
    header = reply.get("header")
    return _int(header, "revision") if isinstance(header, Mapping) else 0


def parse_range(reply: Mapping[str, Any]) -> tuple[int, list[KeyValue]]:
    """The store revision of a range reply and its key-values."""
    kvs = reply.get("kvs", [])
    if not isinstance(kvs, list):
        raise RegistryError("etcd: range reply 'kvs' is not a list")
    return header_revision(reply), [parse_kv(kv) for kv in kvs]


def _parse_event(obj: Any) -> Event:
    if not isinstance(obj, Mapping) or not isinstance(obj.get("kv"), Mapping):
        raise RegistryError(f"etcd: malformed watch event {obj!r}")
    try:
        kind = EventType(obj.get("type", "PUT"))
    except ValueError:
        raise RegistryError(f"etcd: unknown event type {obj.get('type')!r}") from None
    return Event(kind, parse_kv(obj["kv"]))


def parse_watch_message(line: bytes) -> WatchResponse:
    """One line of a watch stream; raises EtcdError for an error message."""
    try:
        obj = json.loads(line)
    except ValueError:
        raise RegistryError(f"etcd: watch line is not JSON: {line[:200]!r}") from None
    result = unwrap_stream_message(obj)
    events = result.get("events", [])
    if not isinstance(events, list):
        raise RegistryError("etcd: watch 'events' is not a list")
    return WatchResponse(
        revision=header_revision(result),
        watch_id=_int(result, "watch_id"),
        created=bool(result.get("created", False)),
        canceled=bool(result.get("canceled", False)),
        compact_revision=_int(result, "compact_revision"),
        cancel_reason=str(result.get("cancel_reason", "")),
        events=tuple(_parse_event(e) for e in events),
    )


def unwrap_stream_message(obj: Any) -> Mapping[str, Any]:
    """The `result` of one streamed message, or EtcdError for its `error`."""
    if not isinstance(obj, Mapping):
        raise RegistryError(f"etcd: stream message is not an object: {obj!r}")
    if "error" in obj:
        raise error_from_body(obj["error"])
    result = obj.get("result")
    if not isinstance(result, Mapping):
        raise RegistryError(f"etcd: stream message without result: {obj!r}")
    return result


def error_from_body(body: Any) -> EtcdError:
    """The error a non-200 unary answer (or a stream's `error`) carries."""
    if isinstance(body, Mapping):
        code = body.get("code", 2)
        message = body.get("message") or body.get("error") or "unknown error"
        return EtcdError(code if isinstance(code, int) else 2, str(message))
    return EtcdError(2, str(body)[:200])


class LineSplitter:
    """Bytes of a stream in, complete lines out (newline dropped); a line longer
    than `max_line` bytes is an error rather than unbounded buffering."""

    def __init__(self, max_line: int = 16 * 1024 * 1024) -> None:
        self.max_line = max_line
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        start = len(self._buf)
        self._buf += data
        lines: list[bytes] = []
        cut = 0
        while (nl := self._buf.find(b"\n", max(start, cut))) >= 0:
            line = bytes(self._buf[cut:nl])
            if len(line) > self.max_line:
                raise RegistryError(f"etcd: stream line over {self.max_line} bytes")
            if line.strip():
                lines.append(line)
            cut = nl + 1
        del self._buf[:cut]
        if len(self._buf) > self.max_line:
            raise RegistryError(f"etcd: stream line over {self.max_line} bytes")
        return lines

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line."""
        return len(self._buf)
