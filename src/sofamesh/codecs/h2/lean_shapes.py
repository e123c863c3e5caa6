"""The payload shape of each HTTP/2 frame type (RFC 9113 §6), as the lean codec checks it.

h2 (hyperframe) parses a frame's payload before it looks at the connection's
state, so a frame of the wrong size or with impossible padding is a connection
error first; the lean codec checks in the same order, with these rules, also
for a frame that arrives where it may not (inside a header block: `SHAPED`).
"""

from __future__ import annotations

from collections.abc import Callable

from sofamesh.codecs.h2 import frames as f
from sofamesh.codecs.h2.lean_state import ConnError


def unpad(payload: bytes) -> bytes:
    if not payload:
        raise ConnError(f.FRAME_SIZE_ERROR, "DATA lacks its pad length")
    if payload[0] >= len(payload):
        raise ConnError(f.PROTOCOL_ERROR, "DATA padding too long")
    return payload[1 : len(payload) - payload[0]]


def depends_on_itself(prefix: bytes, flags: int, sid: int) -> bool:
    start = 1 if flags & f.PADDED else 0
    return bool(len(prefix) >= start + 4 and f.u32(prefix, start) & f.STREAM_MASK == sid)


def block_start(flags: int, payload: bytes) -> int:
    """Where a HEADERS frame's block begins, after the pad length and priority fields.

    Padding is checked as h2 (hyperframe) does: against the payload after the
    pad length field, so a frame of padding alone is refused too.
    """
    start = 0
    if flags & f.PADDED:
        if not payload:
            raise ConnError(f.FRAME_SIZE_ERROR, "HEADERS lacks its pad length")
        start = 1
    if flags & f.PRIORITY_FLAG:
        if len(payload) - start < 5:
            raise ConnError(f.FRAME_SIZE_ERROR, "HEADERS priority truncated")
        start += 5
    if flags & f.PADDED and payload[0] and payload[0] >= len(payload) - 1:
        raise ConnError(f.PROTOCOL_ERROR, "HEADERS padding too long")
    return start


def sized(name: str, ok: Callable[[int], bool]) -> Callable[[int, bytes], None]:
    def check(_flags: int, payload: bytes) -> None:
        if not ok(len(payload)):
            raise ConnError(f.FRAME_SIZE_ERROR, f"{name} of the wrong size")

    return check


def data_shape(flags: int, payload: bytes) -> None:
    if flags & f.PADDED:
        unpad(payload)


def settings_shape(flags: int, payload: bytes) -> None:
    """hyperframe refuses an ACK with a payload before it counts the payload's octets, so that
    is PROTOCOL_ERROR (h2's answer, inside a header block or not) whatever its length."""
    if flags & f.ACK and payload:
        raise ConnError(f.PROTOCOL_ERROR, "SETTINGS ACK with a payload")
    if len(payload) % 6:
        raise ConnError(f.FRAME_SIZE_ERROR, "SETTINGS of the wrong size")


def push_promise_shape(flags: int, payload: bytes) -> None:
    start = 1 if flags & f.PADDED else 0
    if len(payload) < start + 4:
        raise ConnError(f.FRAME_SIZE_ERROR, "PUSH_PROMISE truncated")
    promised = f.u32(payload, start)
    if not promised or promised % 2:
        raise ConnError(f.PROTOCOL_ERROR, f"PUSH_PROMISE of stream {promised}")
    if start and payload[0] and payload[0] >= len(payload):
        raise ConnError(f.PROTOCOL_ERROR, "PUSH_PROMISE padding too long")


def altsvc_shape(_flags: int, payload: bytes) -> None:
    if len(payload) < 2 or 2 + (payload[0] << 8 | payload[1]) > len(payload):
        raise ConnError(f.FRAME_SIZE_ERROR, "ALTSVC origin runs past the frame")


# The size rules of each frame type, for frames checked out of their turn.
SHAPED: dict[int, Callable[[int, bytes], None]] = {
    f.DATA: data_shape,
    f.HEADERS: block_start,  # type: ignore[dict-item]
    f.PRIORITY: sized("PRIORITY", lambda n: n == 5),
    f.RST_STREAM: sized("RST_STREAM", lambda n: n == 4),
    f.SETTINGS: settings_shape,
    f.PING: sized("PING", lambda n: n == 8),
    f.GOAWAY: sized("GOAWAY", lambda n: n >= 8),
    f.WINDOW_UPDATE: sized("WINDOW_UPDATE", lambda n: n == 4),
    f.PUSH_PROMISE: push_promise_shape,
    f.ALTSVC: altsvc_shape,
}
