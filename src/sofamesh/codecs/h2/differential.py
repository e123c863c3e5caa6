"""The lean codec against its reference: one judge, and every difference it allows.

`LeanH2Codec` must take any input as `ReferenceH2Codec` (on h2) does: the same
events, or a connection error of the same code. The differential tests
(tests/codecs/h2/test_h2_differential.py) and the fuzz target
`scripts/fuzz.py --codec "h2 lean = h2"` both ask `judge`. Where the codecs
differ by design, the difference is allowed here, once and exactly, and
`DIFFERENCES` lists each with the RFC section that decides it
(docs/protocols/grpc.md explains them). Anything else is an `H2Mismatch`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs

from sofamesh.codecs.h2 import frames as f
from sofamesh.codecs.h2.connection import ReferenceH2Codec
from sofamesh.codecs.h2.errors import H2ConnectionError
from sofamesh.codecs.h2.events import (
    DataReceived,
    Event,
    HeadersReceived,
    SettingsChanged,
    StreamReset,
    TrailersReceived,
    WindowOpened,
)
from sofamesh.codecs.h2.lean import NAKED_CONTINUATION, RST_BEFORE_STREAMS, LeanH2Codec
from sofamesh.codecs.h2.malformed import malformed_request, malformed_response
from sofamesh.codecs.h2.matcher import PREFACE

Codec = LeanH2Codec | ReferenceH2Codec
Make = Callable[[str], Codec]  # a fresh codec of the kind named: "lean" or "ref"
Outcome = tuple[str, Any]  # ("events", the folded events) or ("error", the code)
H2_BODY_LENGTH = "InvalidBodyLengthError"  # how h2's reason for a content-length breach begins
H2_INFORMATIONAL = "Cannot set END_STREAM on informational"  # h2's reason: a 1xx and END_STREAM


@attrs.frozen
class Difference:
    """One way the lean codec may answer an input otherwise than h2."""

    rfc: str
    lean: str
    h2: str


HPACK = Difference("RFC 9113 §4.3", "COMPRESSION_ERROR", "PROTOCOL_ERROR")
FRAME_SIZE = Difference(
    "RFC 9113 §4.2", "FRAME_SIZE_ERROR once the frame header arrived", "once the whole frame did"
)
MALFORMED_AT_ONCE = Difference(
    "RFC 9113 §8.1.1",
    "a malformed stream is reset before its next frame is read",
    "after the whole read, so a later frame of it may break the connection",
)
NAKED_CONTINUATION_ANYWHERE = Difference(
    "RFC 9113 §6.10", "PROTOCOL_ERROR", "STREAM_CLOSED on a closed stream"
)
IDLE_RESET = Difference(
    "RFC 9113 §6.4",
    "RST_STREAM before any stream: PROTOCOL_ERROR",
    "ignored once an ALTSVC frame moved its connection state",
)
BAD_CONTENT_LENGTH = Difference(
    "RFC 9113 §8.1.1, RFC 9110 §8.6",
    "an invalid content-length makes a malformed request: a stream error",
    "a connection error",
)
CONTENT_LENGTH_DATA = Difference(
    "RFC 9113 §8.1.1",
    "DATA past (or ending short of) the content-length: a stream error",
    "a connection error",
)
CONTENT_LENGTH_END = Difference(
    "RFC 9113 §8.1.1",
    "a header block ending a stream short of its content-length: a stream error",
    "accepted (h2 compares only when DATA arrives)",
)
INFORMATIONAL_REQUEST = Difference(
    "RFC 9113 §8.1.1, §8.3.1",
    "a request carrying :status is malformed: a stream error, 1xx or not",
    "a request with a 1xx :status and END_STREAM breaks the connection",
)
LOCAL_MISUSE = Difference(
    "RFC 9113 §5.1",
    "DATA before HEADERS, or after END_STREAM, refused (LocalProtocolError, StreamGone)",
    "sometimes sent, or the stream closed",
)
DIFFERENCES: dict[str, Difference] = {
    "hpack": HPACK,
    "frame size": FRAME_SIZE,
    "malformed at once": MALFORMED_AT_ONCE,
    "naked continuation": NAKED_CONTINUATION_ANYWHERE,
    "idle reset": IDLE_RESET,
    "bad content-length": BAD_CONTENT_LENGTH,
    "content-length and DATA": CONTENT_LENGTH_DATA,
    "content-length and END_STREAM": CONTENT_LENGTH_END,
    "informational request": INFORMATIONAL_REQUEST,
    "local misuse": LOCAL_MISUSE,
}


class H2Mismatch(AssertionError):
    """The lean codec and h2 answered one input differently, and no difference allows it."""


def judge(make: Make, data: bytes) -> None:
    """A lean and a reference codec from `make` must take `data` alike; else `H2Mismatch`."""
    lean, ref = make("lean"), make("ref")
    errors_before = lean.stream_errors
    a, why = told(lean, data)
    b, ref_why = told(ref, data)
    reset_here = lean.stream_errors > errors_before
    if not alike(a, b, why) and b[0] == "error" and reset_here:  # MALFORMED_AT_ONCE
        ref = make("ref")
        b, ref_why = by_frame(ref, data)
    if a == ("error", f.FRAME_SIZE_ERROR) and b[0] == "events":  # FRAME_SIZE: complete it
        assert isinstance(ref, ReferenceH2Codec)
        b, ref_why = told(ref, bytes(ref.pending_frame_bytes()))
    if b == ("error", f.PROTOCOL_ERROR) and "content-length" in ref_why and reset_here:
        return  # BAD_CONTENT_LENGTH
    informational = ref_why.startswith(H2_INFORMATIONAL) and not lean.client_side
    if b == ("error", f.PROTOCOL_ERROR) and informational and reset_here and a[0] == "events":
        return  # INFORMATIONAL_REQUEST
    if alike(a, b, why) or _content_length_judged(make, data):
        return
    raise H2Mismatch(f"lean {_brief(a)} ({why}) != h2 {_brief(b)} ({ref_why})")


def told(codec: Codec, data: bytes) -> tuple[Outcome, str]:
    """What `codec` made of `data`, and the reason of the connection error if there was one."""
    try:
        return ("events", fold(codec.receive_data(data))), ""
    except H2ConnectionError as exc:
        return ("error", exc.error_code), exc.reason


def fold(events: list[Event]) -> list[Event]:
    """Events with the hints "look at the windows again" folded: the reference sends its
    initial window in a second SETTINGS, which its peer reports as one more
    SettingsChanged(None) and WindowOpened(0); neither changes what the receiver does."""
    out: list[Event] = []
    for ev in events:
        if ev == SettingsChanged(max_concurrent_streams=None):
            continue
        if ev == WindowOpened(stream_id=0) and out and out[-1] == ev:
            continue
        out.append(ev)
    return out


def same_error(lean: int, ref: int, why: str = "") -> bool:
    """The lean codec's connection error `lean` (raised for `why`) and the reference's `ref`."""
    if (lean, ref) == (f.PROTOCOL_ERROR, f.STREAM_CLOSED) and why == NAKED_CONTINUATION:
        return True  # NAKED_CONTINUATION_ANYWHERE
    return lean == ref or {lean, ref} == {f.COMPRESSION_ERROR, f.PROTOCOL_ERROR}  # HPACK


def alike(a: Outcome, b: Outcome, why: str) -> bool:
    """The lean codec's outcome `a` (an error raised for `why`) and the reference's `b`."""
    if a[0] == b[0] == "error":
        return same_error(a[1], b[1], why)
    if a == ("error", f.PROTOCOL_ERROR) and b[0] == "events" and why == RST_BEFORE_STREAMS:
        return True  # IDLE_RESET
    return a == b


def by_frame(codec: Codec, data: bytes) -> tuple[Outcome, str]:
    """`data` fed one frame at a time: the reference's malformed-stream resets (made after
    each `receive_data`) then come before the stream's next frame, as RFC 9113 §8.1.1 has it."""
    events: list[Event] = []
    try:
        for chunk in frames(data):
            events += codec.receive_data(chunk)
    except H2ConnectionError as exc:
        return ("error", exc.error_code), exc.reason
    return ("events", fold(events)), ""


def frames(data: bytes) -> Iterator[bytes]:
    """The preface (if `data` begins with it), then each frame, the last perhaps cut short."""
    pos = len(PREFACE) if data.startswith(PREFACE) else 0
    if pos:
        yield data[:pos]
    while pos < len(data):
        end = pos + 9 + int.from_bytes(data[pos : pos + 3], "big")
        yield data[pos:end]
        pos = end


def _content_length_judged(make: Make, data: bytes) -> bool:
    """CONTENT_LENGTH_DATA, CONTENT_LENGTH_END: fed frame by frame, both codecs agree up to
    the frame at which the lean codec reset a stream for its content-length, and h2 broke
    the connection over that frame's DATA or let that frame's header block end the stream
    short. The comparison ends there: the codecs hold that stream differently from then."""
    lean, ref = make("lean"), make("ref")
    assert isinstance(lean, LeanH2Codec) and isinstance(ref, ReferenceH2Codec)
    for chunk in frames(data):
        breaches = lean.content_length_errors
        sid = int.from_bytes(chunk[5:9], "big") & f.STREAM_MASK if len(chunk) >= 9 else 0
        owed = ref.content_length_owed(sid)
        a, why = told(lean, chunk)
        b, ref_why = told(ref, chunk)
        if lean.content_length_errors > breaches:
            return _breach_explained(a, b, ref_why, sid, owed, lean.client_side)
        if not alike(a, b, why) or a[0] == "error":
            return False
    return False


def _breach_explained(
    a: Outcome, b: Outcome, ref_why: str, sid: int, owed: int | None, client_side: bool
) -> bool:
    reset = ("events", [StreamReset(stream_id=sid, error_code=f.PROTOCOL_ERROR, remote=False)])
    if b[0] == "error" and b[1] == f.PROTOCOL_ERROR and ref_why.startswith(H2_BODY_LENGTH):
        return a == reset
    if b[0] == "error":  # BAD_CONTENT_LENGTH: h2 refused it, the lean codec reset the request
        return b[1] == f.PROTOCOL_ERROR and "content-length" in ref_why and a == ("events", [])
    ended = b[1][0] if len(b[1]) == 1 else None
    if isinstance(ended, TrailersReceived):
        return ended.stream_id == sid and bool(owed) and a == reset
    if isinstance(ended, HeadersReceived) and ended.end_stream and ended.stream_id == sid:
        check = malformed_response if client_side else malformed_request
        opened_by_it = not client_side  # the application never heard of a request reset so
        return bool(check(ended.headers)[1]) and a == (("events", []) if opened_by_it else reset)
    return False


class BodyTally:
    """A receiver's events followed per stream, to see a content-length breach the way the
    lean codec does in events h2 let through (CONTENT_LENGTH_END)."""

    def __init__(self, client_side: bool) -> None:
        self._check = malformed_response if client_side else malformed_request
        self._left: dict[int, int] = {}

    def breached(self, events: list[Event]) -> bool:
        """Whether `events` end a stream that did not get what its content-length said."""
        left = self._left
        for ev in events:
            if isinstance(ev, HeadersReceived):
                length = self._check(ev.headers)[1]
                if ev.end_stream and length:
                    return True
                if length is not None:
                    left[ev.stream_id] = length
            elif isinstance(ev, DataReceived) and ev.stream_id in left:
                left[ev.stream_id] -= len(ev.data)
                if left[ev.stream_id] < 0 or (ev.end_stream and left[ev.stream_id]):
                    return True
            elif isinstance(ev, TrailersReceived) and left.get(ev.stream_id):
                return True
        return False


def breach_seen(
    codec: Codec, breaches_before: int, got: Outcome, why: str, tally: BodyTally
) -> bool:
    """Whether `codec`'s answer `got` to one input (an error raised for `why`) was over a
    content-length: the lean codec's stream error, or h2's connection error or stream
    ended short (BAD_CONTENT_LENGTH, CONTENT_LENGTH_DATA, CONTENT_LENGTH_END)."""
    if isinstance(codec, LeanH2Codec):
        return codec.content_length_errors > breaches_before
    if got[0] == "error":
        return why.startswith(H2_BODY_LENGTH) or "content-length" in why
    return tally.breached(got[1])


def _brief(outcome: Outcome) -> str:
    return repr(outcome)[:200]
