"""Dubbo frames as immutable tuples, and their encoding (the layout is in `wire`).

The body is bytes: a proxy forwards it untouched; `body` decodes Hessian 2 ones.
"""

from __future__ import annotations

from typing import NamedTuple

from sofamesh.codecs.dubbo.errors import LocalProtocolError
from sofamesh.codecs.dubbo.wire import (
    FLAG_EVENT,
    FLAG_REQUEST,
    FLAG_TWO_WAY,
    HEADER,
    HEARTBEAT_BODY,
    MAGIC,
    MAX_INT_LENGTH,
    MAX_REQUEST_ID,
    SERIALIZATION_MASK,
    Serialization,
    Status,
)


class FrameHeader(NamedTuple):
    """The fixed header of a frame, as read (what an error reply needs)."""

    flags: int
    status: int
    request_id: int
    body_length: int

    @property
    def is_request(self) -> bool:
        return bool(self.flags & FLAG_REQUEST)

    @property
    def two_way(self) -> bool:
        return bool(self.flags & FLAG_TWO_WAY)

    @property
    def event(self) -> bool:
        return bool(self.flags & FLAG_EVENT)

    @property
    def serialization(self) -> int:
        return self.flags & SERIALIZATION_MASK


class RequestFrame(NamedTuple):
    request_id: int
    body: bytes
    serialization: int = Serialization.HESSIAN2
    two_way: bool = True
    event: bool = False

    @property
    def is_heartbeat(self) -> bool:
        return self.event and self.body == HEARTBEAT_BODY


class ResponseFrame(NamedTuple):
    request_id: int
    status: int
    body: bytes
    serialization: int = Serialization.HESSIAN2
    event: bool = False

    @property
    def is_heartbeat(self) -> bool:
        return self.event and self.body == HEARTBEAT_BODY


Frame = RequestFrame | ResponseFrame


def encode(frame: Frame, *, request_id: int | None = None) -> bytes:
    """The frame's bytes; `request_id` overrides the frame's (a proxy's re-mapping)."""
    rid = frame.request_id if request_id is None else request_id
    body = frame.body
    if not 0 <= rid <= MAX_REQUEST_ID:
        raise LocalProtocolError(f"request id {rid} is not a 64-bit value")
    if len(body) > MAX_INT_LENGTH:
        raise LocalProtocolError(f"a body of {len(body)} bytes is over Dubbo's int length")
    if not 0 <= frame.serialization <= SERIALIZATION_MASK:
        raise LocalProtocolError(f"serialization id {frame.serialization} is not 5 bits")
    if type(frame) is RequestFrame:
        flags = FLAG_REQUEST | frame.serialization
        flags |= (FLAG_TWO_WAY if frame.two_way else 0) | (FLAG_EVENT if frame.event else 0)
        status = 0
    else:
        flags = frame.serialization | (FLAG_EVENT if frame.event else 0)
        status = frame.status  # type: ignore[union-attr]
        if not 0 <= status <= 0xFF:
            raise LocalProtocolError(f"status {status} is not a byte")
    return HEADER.pack(MAGIC, flags, status, rid, len(body)) + body


def heartbeat(request_id: int) -> RequestFrame:
    """A heartbeat request: a two-way event with a null body."""
    return RequestFrame(request_id, HEARTBEAT_BODY, Serialization.HESSIAN2, True, True)


def heartbeat_reply(to: RequestFrame) -> ResponseFrame:
    """The reply to a heartbeat: an OK event echoing its id and serialization."""
    return ResponseFrame(to.request_id, Status.OK, HEARTBEAT_BODY, to.serialization, True)


def reply(to: RequestFrame | FrameHeader, status: int, body: bytes) -> ResponseFrame:
    """A response to `to` (a request, or the header of one the decoder refused)."""
    return ResponseFrame(to.request_id, status, body, to.serialization, False)
