"""The lean codec's connection state and everything the application calls (`lean.py` reads).

Settings, windows, open streams and how closed ones ended, our HPACK
contexts, and the output queue; the sending half of `H2Codec`'s interface
(`send_headers`, `send_data`, `ack`, `reset`, `close`) lives here, so the
frame reader in `lean.py` stays one concern.
"""

from __future__ import annotations

from sofamesh.codecs.h2 import frames as f
from sofamesh.codecs.h2.compression import HeaderDecoder
from sofamesh.codecs.h2.errors import LocalProtocolError, StreamGone
from sofamesh.codecs.h2.events import Event, GoAway, RawHeaders, SettingsChanged, WindowOpened
from sofamesh.codecs.h2.hpack_encoder import HeaderEncoder
from sofamesh.codecs.h2.lean_guard import LeanGuard
from sofamesh.codecs.h2.lean_stream import CLOSED_BY_END, CLOSED_BY_RESET, LeanStream, ReceiveWindow
from sofamesh.codecs.h2.limits import DEFAULT_H2_LIMITS, MAX_WINDOW, H2Limits
from sofamesh.codecs.h2.matcher import PREFACE

DEFAULT_WINDOW = 65_535  # RFC 9113 §6.9.2, until SETTINGS say otherwise
_CLOSED_REMEMBERED = 4096  # how many closed streams' endings we keep apart
_UNLIMITED_STREAMS = 2**32 + 1  # no MAX_CONCURRENT_STREAMS from the peer yet


class ConnError(Exception):
    """The peer broke the connection: GOAWAY with `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class LeanState:
    """Connection-wide state of one lean HTTP/2 connection, and its sending side."""

    # A connection has 29 attributes: CPython 3.11 keeps at most 30 of an instance's in its
    # class's shared keys, and past them every attribute read on the hot path takes the slow
    # lookup (about 4 % more instructions per call). New counters go in `guard`.
    def __init__(self, *, client_side: bool, limits: H2Limits = DEFAULT_H2_LIMITS) -> None:
        self.client_side = client_side
        self.limits = limits
        self.guard = LeanGuard(limits)
        self.stream_errors = 0  # streams we reset for malformed input
        self.goaway: GoAway | None = None  # the peer's, once received
        self.highest_inbound_stream_id = 0
        self._highest_outbound = 0
        self._streams: dict[int, LeanStream] = {}
        self._closed: dict[int, int] = {}  # stream id -> CLOSED_BY_RESET or CLOSED_BY_END
        self._open_inbound = self.open_outbound_streams = 0
        self._out: list[bytes] = []
        self._buf = b""
        self._dead = False
        self._preface_pending = not client_side
        self._block_sid = self._block_flags = 0
        self._block_prefix = b""
        self._block_parts: list[bytes] = []
        self._refuse_above: int | None = None  # after our GOAWAY: new streams are refused
        self._decoder = HeaderDecoder(limits.max_header_list_size)
        self._encoder = HeaderEncoder()
        self._recv = ReceiveWindow(DEFAULT_WINDOW)  # the connection's, from the peer
        self._recv_initial = DEFAULT_WINDOW  # a new stream's, until our SETTINGS are acked
        self._settings_unacked = 0
        self._send_window = DEFAULT_WINDOW
        self._peer_initial = DEFAULT_WINDOW
        self._peer_max_frame = f.MAX_FRAME_SIZE_DEFAULT
        self.remote_max_streams = _UNLIMITED_STREAMS

    # -- lifecycle ----------------------------------------------------------------------

    def initiate(self) -> None:
        """Queue the preface (client) and our SETTINGS, and open the connection window."""
        lim = self.limits
        if self.client_side:
            self._out.append(PREFACE)
        values = {
            f.ENABLE_PUSH: 0,
            f.MAX_CONCURRENT_STREAMS: lim.max_concurrent_streams,
            f.INITIAL_WINDOW_SIZE: lim.stream_window,
            f.MAX_FRAME_SIZE: lim.max_frame_size,
            f.MAX_HEADER_LIST_SIZE: lim.max_header_list_size,
        }
        self._out.append(f.settings(values))
        self._settings_unacked += 1
        extra = lim.connection_window - DEFAULT_WINDOW
        if extra > 0:
            self._out.append(f.window_update(0, extra))
            self._recv = ReceiveWindow(lim.connection_window)

    def close(self, error_code: int = f.NO_ERROR, reason: str = "") -> None:
        """Queue a GOAWAY: no new streams; those already accepted may finish (RFC 9113 §6.8).

        A graceful one (NO_ERROR) lets the streams in flight finish, and refuses
        (REFUSED_STREAM: safe to retry elsewhere) those the peer opens after it;
        any other code ends the connection.
        """
        if self._dead or (error_code == f.NO_ERROR and self._refuse_above is not None):
            return
        last = self.highest_inbound_stream_id
        self._out.append(f.goaway(last, error_code, reason.encode()[:256]))
        if error_code == f.NO_ERROR:
            self._refuse_above = last
        else:
            self._dead = True

    def data_to_send(self) -> bytes:
        self.guard.control_queued = 0  # the ACKs owed so far are on their way
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    # -- output -------------------------------------------------------------------------

    @property
    def content_length_errors(self) -> int:
        """Streams reset because their content-length was invalid or not what DATA added up to."""
        return self.guard.content_length_errors

    def next_stream_id(self) -> int:
        return self._highest_outbound + 2 if self._highest_outbound else 1 + (not self.client_side)

    def send_headers(self, stream_id: int, headers: RawHeaders, end_stream: bool = False) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            stream = self._open_outbound(stream_id)
            stream.request = headers  # a HEAD's response has no content (RFC 9110 §9.3.2)
        elif stream.local_closed or self._dead:
            raise StreamGone(f"stream {stream_id} is closed")
        elif stream.headers_out and not end_stream:
            raise LocalProtocolError(f"trailers on stream {stream_id} must end it")
        block = self._encoder.encode(headers)
        self._out.append(f.header_block(stream_id, block, end_stream, self._peer_max_frame))
        stream.headers_out = True
        if end_stream:
            self._local_end(stream)

    def _open_outbound(self, stream_id: int) -> LeanStream:
        if self._dead or stream_id <= self._highest_outbound or stream_id % 2 != self.client_side:
            raise StreamGone(f"stream {stream_id} is closed or not ours to open")
        if self.open_outbound_streams >= self.remote_max_streams:
            raise LocalProtocolError(f"the peer allows {self.remote_max_streams} streams")
        self._highest_outbound = stream_id
        return self._open(stream_id)

    def send_data(self, stream_id: int, data: bytes | memoryview, end_stream: bool = False) -> int:
        """Send what the windows allow of `data`; return how many bytes went.

        `end_stream` applies only once all of `data` went.
        """
        total = len(data)
        if not total and not end_stream:
            return 0
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_closed or self._dead:
            raise StreamGone(f"stream {stream_id} is closed")
        if not stream.headers_out:
            raise LocalProtocolError(f"DATA before HEADERS on stream {stream_id}")
        if not total:
            if end_stream:
                self._out.append(f.header(0, f.DATA, f.END_STREAM, stream_id))
                self._local_end(stream)
            return 0
        window = min(stream.send_window, self._send_window)
        if total <= window and total <= self._peer_max_frame:
            # The common case, a whole message in one frame: no loop, no slicing.
            flags = f.END_STREAM if end_stream else 0
            head = f.HEADER.pack(total >> 8, total & 0xFF, f.DATA, flags, stream_id)
            self._out += (head, data)  # type: ignore[arg-type]
            self.guard.data_frames_sent += 1
            stream.send_window -= total
            self._send_window -= total
            if end_stream:
                self._local_end(stream)
            return total
        frame, out, sent, pack = self._peer_max_frame, self._out, 0, f.HEADER.pack
        while sent < total and window > 0:
            n = min(total - sent, window, frame)
            last = end_stream and sent + n == total
            out.append(pack(n >> 8, n & 0xFF, f.DATA, f.END_STREAM if last else 0, stream_id))
            out.append(data[sent : sent + n] if sent or n < total else data)  # type: ignore[arg-type]
            self.guard.data_frames_sent += 1
            sent += n
            window -= n
        stream.send_window -= sent
        self._send_window -= sent
        if end_stream and sent == total:
            self._local_end(stream)
        return sent

    def end_stream(self, stream_id: int) -> None:
        self.send_data(stream_id, b"", end_stream=True)

    def window(self, stream_id: int) -> int:
        """Bytes `send_data` could send on `stream_id` now."""
        stream = self._streams.get(stream_id)
        if stream is None:
            raise StreamGone(f"stream {stream_id} is closed")
        return min(stream.send_window, self._send_window)

    def ack(self, stream_id: int, flow_length: int) -> None:
        """The application consumed `flow_length` bytes of `stream_id`: reopen the windows."""
        if not flow_length:
            return
        self._credit(flow_length)
        stream = self._streams.get(stream_id)
        if stream is not None:
            increment = stream.recv.acknowledge(flow_length)
            if increment:
                self._out.append(f.window_update(stream_id, increment))

    def reset(self, stream_id: int, error_code: int = f.CANCEL) -> None:
        """RST_STREAM, if the stream is still open (a reset of a closed stream is a no-op)."""
        stream = self._streams.get(stream_id)
        if stream is not None and not self._dead:
            self._out.append(f.rst_stream(stream_id, error_code))
            self._close(stream, CLOSED_BY_RESET)

    # -- streams ------------------------------------------------------------------------

    def _open(self, stream_id: int) -> LeanStream:
        stream = LeanStream(stream_id, self._peer_initial, self._recv_initial)
        self._streams[stream_id] = stream
        if stream_id % 2 == self.client_side:
            self.open_outbound_streams += 1
        else:
            self.highest_inbound_stream_id = stream_id
            self._open_inbound += 1
        return stream

    def _close(self, stream: LeanStream, how: int) -> None:
        sid = stream.id
        del self._streams[sid]
        if sid % 2 == self.client_side:
            self.open_outbound_streams -= 1
        else:
            self._open_inbound -= 1
        closed = self._closed
        if len(closed) >= _CLOSED_REMEMBERED:
            del closed[next(iter(closed))]
        closed[sid] = how

    def _local_end(self, stream: LeanStream) -> None:
        stream.local_closed = True
        if stream.remote_closed:
            self._close(stream, CLOSED_BY_END)

    def _remote_end(self, stream: LeanStream) -> None:
        stream.remote_closed = True
        if stream.local_closed:
            self._close(stream, CLOSED_BY_END)

    def _stream_error(self, stream_id: int) -> None:
        self.stream_errors += 1
        self.reset(stream_id, f.PROTOCOL_ERROR)
        self.guard.stream_refused_or_malformed()

    def _idle_check(self, stream_id: int) -> None:
        """A frame on a stream never opened (RFC 9113 §5.1: idle) breaks the connection."""
        ours = stream_id % 2 == self.client_side
        highest = self._highest_outbound if ours else self.highest_inbound_stream_id
        if stream_id > highest:
            raise ConnError(f.PROTOCOL_ERROR, f"frame on idle stream {stream_id}")

    def _credit(self, n: int) -> None:
        increment = self._recv.acknowledge(n)
        if increment:
            self._out.append(f.window_update(0, increment))

    # -- settings -----------------------------------------------------------------------

    def _our_settings_acked(self) -> None:
        if not self._settings_unacked:
            return
        self._settings_unacked -= 1
        window = self.limits.stream_window
        if self._recv_initial != window:
            self._recv_initial = window
            for stream in self._streams.values():
                stream.recv.resize(window)

    def _peer_settings(self, pairs: list[tuple[int, int]]) -> list[Event]:
        values = dict(pairs)  # a setting repeated in one frame: the last value counts
        for key, value in values.items():
            _validate_setting(key, value)
        max_streams: int | None = None
        window = False
        for key, value in values.items():
            if key == f.MAX_CONCURRENT_STREAMS:
                self.remote_max_streams = max_streams = value
            elif key == f.INITIAL_WINDOW_SIZE:
                self._peer_window(value)
                window = True
            elif key == f.MAX_FRAME_SIZE:
                self._peer_max_frame = value
            elif key == f.HEADER_TABLE_SIZE:
                self._encoder.set_max_table_size(value)
        events: list[Event] = [SettingsChanged(max_streams)]
        if window:
            events.append(WindowOpened(0))  # every stream's window moved
        return events

    def _peer_window(self, value: int) -> None:
        delta, self._peer_initial = value - self._peer_initial, value
        for stream in self._streams.values():
            stream.send_window += delta
            if stream.send_window > MAX_WINDOW:
                raise ConnError(f.FLOW_CONTROL_ERROR, "a stream window above 2**31-1")


def _validate_setting(key: int, value: int) -> None:
    if key in (f.ENABLE_PUSH, f.ENABLE_CONNECT_PROTOCOL) and value > 1:
        raise ConnError(f.PROTOCOL_ERROR, f"setting {key} must be 0 or 1, got {value}")
    if key == f.INITIAL_WINDOW_SIZE and value > MAX_WINDOW:
        raise ConnError(f.FLOW_CONTROL_ERROR, f"initial window {value} above 2**31-1")
    if key == f.MAX_FRAME_SIZE and not f.MAX_FRAME_SIZE_DEFAULT <= value <= 16_777_215:
        raise ConnError(f.PROTOCOL_ERROR, f"max frame size {value} out of range")
