"""The lean HTTP/2 codec: RFC 9113 framing, stream states and flow control without h2, sans-IO.

`LeanH2Codec` has `H2Codec`'s interface and events, limits and flood
defences (`lean_guard.py`); it exists because h2's general state machine
and HPACK cost about 140 us per request and side, most of the sidecar's CPU
on gRPC. `H2Codec` (on h2) stays the reference: the differential tests feed
both the same conversations and garbage and require the same events, or a
connection error of the same code (tests/codecs/h2/test_h2_differential.py).

Theory of operation. `receive_data` cuts the input into frames (`frames.py`
layout); frames of a header block are joined first (CONTINUATION), then
decoded with the connection's one HPACK context (`compression.py`) even for
a stream that will be refused, since the context is shared. Each frame is
checked in h2's order: the header (stream association, then size), the
payload's shape, the flood guard, then the stream state. A connection error
queues GOAWAY and raises `H2ConnectionError`; a stream error queues
RST_STREAM and the other streams carry on: a malformed header block, or DATA
that does not add up to the message's content-length (RFC 9113 §8.1.1; a
request's is found by the scan its rules make anyway, a response's by one
of its own, and a stream without one pays a test per DATA frame). Stream
bookkeeping lives in `lean_state.py`, payload shapes in `lean_shapes.py`,
the control frames (windows, resets, pings, settings) in `lean_control.py`;
this module is the reader.
"""

from __future__ import annotations

from sofamesh.codecs.h2 import frames as f
from sofamesh.codecs.h2.compression import CompressionError, HeaderListTooLarge
from sofamesh.codecs.h2.errors import H2ConnectionError
from sofamesh.codecs.h2.events import (
    DataReceived,
    Event,
    GoAway,
    HeadersReceived,
    RawHeaders,
    StreamReset,
    TrailersReceived,
)
from sofamesh.codecs.h2.lean_control import RST_BEFORE_STREAMS as RST_BEFORE_STREAMS
from sofamesh.codecs.h2.lean_control import LeanControl
from sofamesh.codecs.h2.lean_guard import Calm
from sofamesh.codecs.h2.lean_shapes import (
    SHAPED,
    altsvc_shape,
    block_start,
    depends_on_itself,
    push_promise_shape,
    unpad,
)
from sofamesh.codecs.h2.lean_state import ConnError
from sofamesh.codecs.h2.lean_stream import CLOSED_BY_END, CLOSED_BY_RESET, LeanStream
from sofamesh.codecs.h2.malformed import (
    bad_content_length,
    malformed_request,
    malformed_response,
)
from sofamesh.codecs.h2.matcher import PREFACE

_CONNECTION_FRAMES = frozenset({f.SETTINGS, f.PING, f.GOAWAY})
_STREAM_FRAMES = frozenset(
    {f.DATA, f.HEADERS, f.PRIORITY, f.RST_STREAM, f.PUSH_PROMISE, f.CONTINUATION}
)
_CONTINUATION_BACKLOG = 64  # frames in one header block, as h2 allows
_PLAIN_BLOCK = f.END_HEADERS | f.PADDED | f.PRIORITY_FLAG  # of these, END_HEADERS alone
_PUSH = 0x100  # not a flag on the wire: the header block being collected is a PUSH_PROMISE's
NAKED_CONTINUATION = "CONTINUATION without a header block"
Verdict = tuple[str, int | None]  # `malformed_request`'s or `malformed_response`'s
_UNJUDGED: Verdict = ("", None)  # trailers: their rule is the codec's own


class LeanH2Codec(LeanControl):
    """One HTTP/2 connection's protocol state, for a client (`client_side`) or a server."""

    def receive_data(self, data: bytes) -> list[Event]:
        """Events the peer's bytes caused; `H2ConnectionError` if it broke the protocol."""
        if self._dead:
            raise H2ConnectionError(f.PROTOCOL_ERROR, "the connection is closed")
        out: list[Event] = []
        try:
            self._receive(data, out)
        except ConnError as exc:
            self._die(exc.code, exc.reason)
        except Calm as exc:
            self._die(f.ENHANCE_YOUR_CALM, str(exc))
        except Exception as exc:  # a bug on odd input must cost one connection only
            self._die(f.PROTOCOL_ERROR, f"unprocessable input: {exc!r}")
        return out

    def _die(self, code: int, reason: str) -> None:
        self._dead = True
        self._out.append(f.goaway(self.highest_inbound_stream_id, code))
        raise H2ConnectionError(code, reason)

    def _receive(self, data: bytes, out: list[Event]) -> None:
        buf = self._buf + data if self._buf else data
        pos = self._preface(buf) if self._preface_pending else 0
        if pos < 0:
            return
        unpack, size, limit = f.HEADER.unpack_from, len(buf), self.limits.max_frame_size
        while size - pos >= 9:
            hi, lo, ftype, flags, sid = unpack(buf, pos)
            sid &= f.STREAM_MASK
            if ftype in (_CONNECTION_FRAMES if sid else _STREAM_FRAMES):
                raise ConnError(f.PROTOCOL_ERROR, f"frame type {ftype} on stream {sid}")
            length = hi << 8 | lo
            if length > limit:
                raise ConnError(f.FRAME_SIZE_ERROR, f"frame of {length} octets")
            end = pos + 9 + length
            if end > size:
                break
            # A call's frames, dispatched here: DATA, and HEADERS whole and plain (no
            # padding or priority, so the payload is the block); the rest by `_frame`.
            if self._block_sid:
                self._frame(ftype, flags, sid, buf[pos + 9 : end], out)
            elif ftype == f.DATA:
                self._data(flags, sid, buf[pos + 9 : end], out)
            elif ftype == f.HEADERS and flags & _PLAIN_BLOCK == f.END_HEADERS:
                block = buf[pos + 9 : end]
                self._header_block(flags, sid, block, block, out)
            else:
                self._frame(ftype, flags, sid, buf[pos + 9 : end], out)
            pos = end
        self._buf = buf[pos:]

    def _preface(self, buf: bytes) -> int:
        """Where the frames begin after the client preface; -1 while it is incomplete."""
        n = min(len(buf), len(PREFACE))
        if buf[:n] != PREFACE[:n]:
            raise ConnError(f.PROTOCOL_ERROR, "invalid HTTP/2 preface")
        if n < len(PREFACE):
            self._buf = buf
            return -1
        self._preface_pending = False
        return len(PREFACE)

    def _frame(self, ftype: int, flags: int, sid: int, payload: bytes, out: list[Event]) -> None:
        if self._block_sid:
            self._continuation(ftype, flags, sid, payload, out)
        elif ftype == f.DATA:
            self._data(flags, sid, payload, out)
        elif ftype == f.HEADERS:
            self._headers_frame(flags, sid, payload, out)
        elif ftype == f.WINDOW_UPDATE:
            self._window_update(sid, payload, out)
        elif ftype == f.SETTINGS:
            self._settings(flags, payload, out)
        elif ftype == f.RST_STREAM:
            self._rst_stream(sid, payload, out)
        elif ftype == f.PING:
            self._ping(flags, payload)
        else:
            self._rare_frame(ftype, flags, sid, payload, out)

    def _rare_frame(
        self, ftype: int, flags: int, sid: int, payload: bytes, out: list[Event]
    ) -> None:
        if ftype == f.PRIORITY:
            if len(payload) != 5:
                raise ConnError(f.FRAME_SIZE_ERROR, "PRIORITY of the wrong size")
            self.guard.priority()
            if f.u32(payload) & f.STREAM_MASK == sid:
                raise ConnError(f.PROTOCOL_ERROR, f"stream {sid} depends on itself")
        elif ftype == f.GOAWAY:
            if len(payload) < 8:
                raise ConnError(f.FRAME_SIZE_ERROR, "GOAWAY too short")
            last, code = f.u32(payload), f.u32(payload, 4)  # the R bit kept, as h2 has it
            self.goaway = GoAway(code, last, payload[8:])
            out.append(self.goaway)
        elif ftype == f.CONTINUATION:
            # RFC 9113 §6.10, whatever the stream's state (h2 says STREAM_CLOSED on a closed one)
            raise ConnError(f.PROTOCOL_ERROR, NAKED_CONTINUATION)
        elif ftype == f.PUSH_PROMISE:
            self._push_promise(flags, sid, payload)
        elif ftype == f.ALTSVC:
            altsvc_shape(flags, payload)
        # RFC 9113 §5.5: frames of unknown types are ignored.

    # -- DATA ---------------------------------------------------------------------------

    def _data(self, flags: int, sid: int, payload: bytes, out: list[Event]) -> None:
        flow = len(payload)
        data = unpad(payload) if flags & f.PADDED else payload
        recv = self._recv  # `ReceiveWindow.consume` inline, here and below: two per call
        recv.available -= flow
        if recv.available < 0:
            raise ConnError(f.FLOW_CONTROL_ERROR, "DATA beyond the connection window")
        stream = self._streams.get(sid)
        if stream is None or stream.remote_closed:
            self._idle_check(sid)
            self._credit(flow)  # nobody will read it: the window comes back at once
            self._stream_closed_error(sid, out)
            return
        if not stream.headers_in:
            raise ConnError(f.PROTOCOL_ERROR, f"DATA before HEADERS on stream {sid}")
        recv = stream.recv
        recv.available -= flow
        if recv.available < 0:
            raise ConnError(f.FLOW_CONTROL_ERROR, f"DATA beyond stream {sid}'s window")
        end = bool(flags & f.END_STREAM)
        left = stream.content_left
        if left is not None:
            left -= len(data)
            stream.content_left = left
            if left < 0 or (end and left):  # past the content-length, or ended short of it
                self._credit(flow)  # nobody will read it: the window comes back at once
                self._content_length_breach(sid, out)
                return
        out.append(DataReceived(sid, data, flow, end))
        if end:
            self._remote_end(stream)

    def _content_length_breach(self, sid: int, out: list[Event]) -> None:
        """RFC 9113 §8.1.1: a message whose DATA does not add up to its content-length is
        malformed, a stream error; the application, which has its headers, hears of it."""
        self.guard.content_length_errors += 1
        self._stream_error(sid)
        out.append(StreamReset(sid, f.PROTOCOL_ERROR, False))

    # -- HEADERS and CONTINUATION -------------------------------------------------------

    def _headers_frame(self, flags: int, sid: int, payload: bytes, out: list[Event]) -> None:
        start = block_start(flags, payload)
        block = payload[start : len(payload) - (payload[0] if flags & f.PADDED else 0)]
        if flags & f.END_HEADERS:
            self._header_block(flags, sid, payload, block, out)
            return
        self._block_sid, self._block_flags = sid, flags
        self._block_prefix, self._block_parts = payload[:start], [block]

    def _push_promise(self, flags: int, sid: int, payload: bytes) -> None:
        """We disabled push: an error, once the frame (and its header block) is complete."""
        push_promise_shape(flags, payload)
        if flags & f.END_HEADERS:
            raise ConnError(f.PROTOCOL_ERROR, "PUSH_PROMISE, with push disabled")
        self._block_sid, self._block_flags = sid, _PUSH
        self._block_prefix, self._block_parts = b"", []

    def _continuation(
        self, ftype: int, flags: int, sid: int, payload: bytes, out: list[Event]
    ) -> None:
        if ftype != f.CONTINUATION or sid != self._block_sid:
            if ftype in SHAPED:  # a malformed frame is that first, as h2 parses it
                SHAPED[ftype](flags, payload)
            raise ConnError(f.PROTOCOL_ERROR, "frame inside a header block")
        parts = self._block_parts
        parts.append(payload)
        if len(parts) > _CONTINUATION_BACKLOG:
            raise ConnError(f.PROTOCOL_ERROR, "too many CONTINUATION frames")
        if flags & f.END_HEADERS:
            self._block_sid = 0
            if self._block_flags == _PUSH:
                raise ConnError(f.PROTOCOL_ERROR, "PUSH_PROMISE, with push disabled")
            self._header_block(self._block_flags, sid, self._block_prefix, b"".join(parts), out)

    def _header_block(
        self, flags: int, sid: int, prefix: bytes, block: bytes, out: list[Event]
    ) -> None:
        stream = self._streams.get(sid)
        if stream is None and not self.client_side and sid > self.highest_inbound_stream_id:
            self.guard.inbound_streams += 1
        # A request's head (server side) or a response's (client side) comes with the verdict
        # of its rules, remembered for a byte-identical block (`decode_judged`); the rules
        # are pure, so judging a block that turns out to be refused or 1xx changes nothing.
        if stream is None:
            judge = None if self.client_side else malformed_request
        else:
            judge = None if stream.headers_in else malformed_response
        try:
            if judge is None:
                headers, verdict = self._decoder.decode(block), _UNJUDGED
            else:
                headers, verdict = self._decoder.decode_judged(block, judge)
        except HeaderListTooLarge as exc:
            raise Calm(str(exc)) from exc
        except CompressionError as exc:
            raise ConnError(f.COMPRESSION_ERROR, str(exc)) from exc
        if flags & f.PRIORITY_FLAG and depends_on_itself(prefix, flags, sid):
            raise ConnError(f.PROTOCOL_ERROR, f"stream {sid} depends on itself")
        end = bool(flags & f.END_STREAM)
        if stream is None:
            self._new_stream(sid, headers, verdict, end, out)
        else:
            self._more_headers(stream, headers, verdict, end, out)

    def _new_stream(
        self, sid: int, headers: RawHeaders, verdict: Verdict, end: bool, out: list[Event]
    ) -> None:
        if self.client_side or not sid % 2 or sid <= self.highest_inbound_stream_id:
            if self._closed_check(sid):
                return
            raise ConnError(f.PROTOCOL_ERROR, f"HEADERS cannot open stream {sid}")
        full = self._open_inbound >= self.limits.max_concurrent_streams
        stream = self._open(sid)
        stream.headers_in = True
        if end:
            stream.remote_closed = True
        if full:
            self.guard.refused_streams += 1
            self.reset(sid, f.REFUSED_STREAM)  # safe for the peer to retry (RFC 9113 §8.7)
            return
        problem, length = verdict
        if problem:
            self.guard.content_length_errors += bad_content_length(headers)
            self._stream_error(sid)
        elif self._refuse_above is not None and sid > self._refuse_above:
            self.reset(sid, f.REFUSED_STREAM)  # opened after our GOAWAY: never processed
        elif end and length:  # RFC 9113 §8.1.1: ended without DATA, so its content-length is 0
            self.guard.content_length_errors += 1
            self._stream_error(sid)
        else:
            stream.content_left = length
            out.append(HeadersReceived(sid, headers, end))

    def _more_headers(
        self, stream: LeanStream, headers: RawHeaders, verdict: Verdict, end: bool, out: list[Event]
    ) -> None:
        sid = stream.id
        if stream.remote_closed:
            self._stream_closed_error(sid, out)
            return
        if not stream.headers_in:  # a response (client side)
            status = headers[0][1] if headers and headers[0][0] == b":status" else b""
            if status[:1] == b"1" and len(status) == 3:
                if end:
                    raise ConnError(f.PROTOCOL_ERROR, "informational response ends the stream")
                return  # 1xx: the final response is still to come
            self._response(stream, headers, verdict, end, out)
            return
        if not end:
            raise ConnError(f.PROTOCOL_ERROR, f"trailers without END_STREAM on stream {sid}")
        if stream.content_left:  # the body ended short of its content-length
            self._content_length_breach(sid, out)
            return
        self._remote_end(stream)
        if any(k[:1] == b":" for k, _ in headers):  # RFC 9113 §8.1: no pseudo-fields
            self._stream_error(sid)
            out.append(StreamReset(sid, f.PROTOCOL_ERROR, False))
        else:
            out.append(TrailersReceived(sid, headers))

    def _response(
        self, stream: LeanStream, headers: RawHeaders, verdict: Verdict, end: bool, out: list[Event]
    ) -> None:
        """A final response (client side); a HEAD's has no content, whatever its
        content-length says (RFC 9110 §9.3.2, RFC 9113 §8.1.1)."""
        sid = stream.id
        stream.headers_in = True
        problem, length = verdict
        if length is not None and (b":method", b"HEAD") in (stream.request or ()):
            length = None
        if end and length and not problem:
            self._content_length_breach(sid, out)
            return
        if end:
            self._remote_end(stream)
        if problem:  # the application waits for this response: it must hear
            self.guard.content_length_errors += bad_content_length(headers)
            self._stream_error(sid)
            out.append(StreamReset(sid, f.PROTOCOL_ERROR, False))
        else:
            stream.content_left = length
            out.append(HeadersReceived(sid, headers, end))

    def _stream_closed_error(self, sid: int, out: list[Event]) -> None:
        """A frame after the peer ended the stream (RFC 9113 §5.1): RST_STREAM(STREAM_CLOSED);
        a stream still half-open on our side ends with it, and its reader hears so."""
        stream = self._streams.get(sid)
        if stream is None:
            self._out.append(f.rst_stream(sid, f.STREAM_CLOSED))
            return
        self.reset(sid, f.STREAM_CLOSED)
        out.append(StreamReset(sid, f.STREAM_CLOSED, True))

    def _closed_check(self, sid: int) -> bool:
        """HEADERS on a stream that is gone: a stream error if it was reset (True), else
        the connection's (RFC 9113 §5.1: STREAM_CLOSED after END_STREAM)."""
        how = self._closed.get(sid)
        if how == CLOSED_BY_RESET:
            self._out.append(f.rst_stream(sid, f.STREAM_CLOSED))
            return True
        if how == CLOSED_BY_END:
            raise ConnError(f.STREAM_CLOSED, f"HEADERS on closed stream {sid}")
        return False
