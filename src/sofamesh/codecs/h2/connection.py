"""Sans-IO glue on the `h2` state machine: bytes in, `events` out, frames to send.

`ReferenceH2Codec` wraps one `h2.connection.H2Connection` for either role. It adds
what a mesh needs on top of h2:

- **Limits as constructor arguments** (`H2Limits`), advertised in the first
  SETTINGS and enforced by h2 (streams, header list, frame size).
- **Stream errors stay stream errors**: h2's own header validation turns a
  malformed request into a connection error; we switch it off and check the
  few rules that matter here ourselves (RFC 9113 §8.1.1, §8.2.2, §8.3), so a
  bad stream is reset (RST_STREAM PROTOCOL_ERROR) and its neighbours live on.
- **Connection errors carry their code**: when h2 rejects input it queues a
  GOAWAY with the right error code; `receive_data` then raises
  `H2ConnectionError` so the transport flushes that GOAWAY and closes.
- **Streams past `max_concurrent_streams` are refused** (RST_STREAM
  REFUSED_STREAM, RFC 9113 §5.1.2; `guard.py`), not the connection.
- **Floods and rapid resets end the connection** (`guard.py`: GOAWAY
  ENHANCE_YOUR_CALM, Envoy's limits and defaults).
- **Flow control the application drives**: DATA is acknowledged only through
  `ack`, after the bytes were consumed, so a slow reader throttles its peer
  (RFC 9113 §5.2), and `send_data` sends only what the windows allow.

Nothing here touches a socket or a clock.
"""

from __future__ import annotations

import contextlib

import h2.config
import h2.connection
import h2.events as h2e
import h2.exceptions
import h2.settings
from h2.exceptions import DenialOfServiceError
from hyperframe.frame import GoAwayFrame

from sofamesh.codecs.h2.errors import H2ConnectionError, StreamGone
from sofamesh.codecs.h2.events import (
    DataReceived,
    Event,
    GoAway,
    HeadersReceived,
    RawHeaders,
    SettingsChanged,
    StreamReset,
    TrailersReceived,
    WindowOpened,
)
from sofamesh.codecs.h2.frames import (
    CANCEL,
    ENHANCE_YOUR_CALM,
    NO_ERROR,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
)
from sofamesh.codecs.h2.guard import FloodGuard
from sofamesh.codecs.h2.limits import DEFAULT_H2_LIMITS, H2Limits
from sofamesh.codecs.h2.malformed import malformed_request, malformed_response


def _config(client_side: bool) -> h2.config.H2Configuration:
    # Validation and normalisation cost a third of h2's time per header block;
    # `malformed.py` keeps the checks that protect the mesh.
    return h2.config.H2Configuration(
        client_side=client_side,
        header_encoding=None,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
        normalize_inbound_headers=False,
    )


class ReferenceH2Codec:
    """One HTTP/2 connection's protocol state on h2, for a client (`client_side`) or a server.

    The reference the lean codec (`lean.py`) is tested against, and a fallback.
    """

    def __init__(self, *, client_side: bool, limits: H2Limits = DEFAULT_H2_LIMITS) -> None:
        self.client_side = client_side
        self.limits = limits
        self._h2 = h2.connection.H2Connection(config=_config(client_side))
        s = h2.settings.SettingCodes
        self._h2.local_settings = _AdvertisedOnly(
            client=client_side,
            initial_values={
                s.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
                s.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
                s.MAX_FRAME_SIZE: limits.max_frame_size,
                s.ENABLE_PUSH: 0,
            },
        )
        self._h2.max_inbound_frame_size = limits.max_frame_size
        self._h2.decoder.max_header_list_size = limits.max_header_list_size
        _survive_graceful_goaway(self._h2)
        self.guard = FloodGuard(self._h2, limits)
        self.stream_errors = 0  # streams we reset for malformed input
        self.goaway: GoAway | None = None
        self._sent: bytes = b""  # frames written here, not by h2 (our graceful GOAWAY)
        self._refuse_above: int | None = None  # after our GOAWAY: new streams are refused
        self._reset_now: set[int] = set()  # streams reset for malformed input in this batch

    # -- lifecycle ----------------------------------------------------------------------

    def initiate(self) -> None:
        """Queue the preface (client) and our SETTINGS, and open the connection window."""
        h = self._h2
        h.initiate_connection()
        # The stream window goes in a second SETTINGS that h2 applies once the peer acks
        # it: until then the peer may use the default 65,535 (RFC 9113 §6.9.2).
        s = h2.settings.SettingCodes
        h.update_settings({s.INITIAL_WINDOW_SIZE: self.limits.stream_window})
        extra = self.limits.connection_window - 65_535
        if extra > 0:
            h.increment_flow_control_window(extra)

    def close(self, error_code: int = NO_ERROR, reason: str = "") -> None:
        """Queue a GOAWAY: no new streams; those already accepted may finish (RFC 9113 §6.8).

        h2 treats any GOAWAY it sends as the end of the connection, so a graceful
        one (NO_ERROR) is framed here, and streams the peer opens after it are
        refused by us (REFUSED_STREAM: safe for the peer to retry elsewhere).
        """
        if error_code != NO_ERROR:
            with contextlib.suppress(h2.exceptions.ProtocolError):  # already closed
                self._h2.close_connection(error_code, reason.encode()[:256] or None)
            return
        if self._refuse_above is not None:
            return
        last = self._h2.highest_inbound_stream_id
        frame = GoAwayFrame(0, last_stream_id=last, error_code=NO_ERROR)
        frame.additional_data = reason.encode()[:256]
        self._sent += self._h2.data_to_send() + frame.serialize()
        self._refuse_above = last

    def data_to_send(self) -> bytes:
        self.guard.control_queued = 0  # the ACKs owed so far are on their way
        if self._sent:
            out, self._sent = self._sent, b""
            return out + self._h2.data_to_send()
        return self._h2.data_to_send()

    # -- input --------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Events the peer's bytes caused; `H2ConnectionError` if it broke the protocol."""
        try:
            raw = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            raise H2ConnectionError(int(exc.error_code), str(exc) or type(exc).__name__) from exc
        except Exception as exc:  # an h2 bug on odd input must cost one connection only
            self.close(PROTOCOL_ERROR)
            raise H2ConnectionError(PROTOCOL_ERROR, f"unprocessable input: {exc!r}") from exc
        out: list[Event] = []
        self._reset_now = set()
        try:
            for ev in raw:
                if getattr(ev, "stream_id", None) not in self._reset_now:
                    self._translate(ev, out)
        except DenialOfServiceError as exc:  # our own resets tipped the rapid-reset count
            self._h2.close_connection(ENHANCE_YOUR_CALM, str(exc).encode()[:256])
            raise H2ConnectionError(ENHANCE_YOUR_CALM, str(exc)) from exc
        return out

    def _translate(self, ev: h2e.Event, out: list[Event]) -> None:
        t = type(ev)
        if t is h2e.DataReceived:
            assert isinstance(ev, h2e.DataReceived)
            out.append(
                DataReceived(
                    stream_id=ev.stream_id or 0,
                    data=ev.data or b"",
                    flow_length=ev.flow_controlled_length or 0,
                    end_stream=ev.stream_ended is not None,
                )
            )
        elif t is h2e.RequestReceived or t is h2e.ResponseReceived:
            self._on_headers(ev, out)  # type: ignore[arg-type]
        elif t is h2e.TrailersReceived:
            assert isinstance(ev, h2e.TrailersReceived)
            self._on_trailers(ev, out)
        elif t is h2e.WindowUpdated:
            assert isinstance(ev, h2e.WindowUpdated)
            out.append(WindowOpened(stream_id=ev.stream_id or 0))
        elif t is h2e.StreamReset:
            assert isinstance(ev, h2e.StreamReset)
            code = int(ev.error_code or 0)
            out.append(StreamReset(stream_id=ev.stream_id or 0, error_code=code, remote=True))
        else:
            self._translate_rare(ev, out)

    def _translate_rare(self, ev: h2e.Event, out: list[Event]) -> None:
        if isinstance(ev, h2e.ConnectionTerminated):
            self.goaway = GoAway(
                error_code=int(ev.error_code or 0),
                last_stream_id=ev.last_stream_id or 0,
                debug=ev.additional_data or b"",
            )
            out.append(self.goaway)
        elif isinstance(ev, h2e.RemoteSettingsChanged):
            s = h2.settings.SettingCodes
            changed = ev.changed_settings.get(s.MAX_CONCURRENT_STREAMS)
            limit = changed.new_value if changed is not None else None
            out.append(SettingsChanged(max_concurrent_streams=limit))
            if s.INITIAL_WINDOW_SIZE in ev.changed_settings:
                out.append(WindowOpened(stream_id=0))  # every stream's window moved
        # InformationalResponseReceived (1xx), PingReceived, SettingsAcknowledged,
        # PriorityUpdated, UnknownFrameReceived: h2 answered what needs answering.

    def _on_headers(self, ev: h2e.RequestReceived | h2e.ResponseReceived, out: list[Event]) -> None:
        sid = ev.stream_id or 0
        headers: RawHeaders = ev.headers or []
        check = malformed_response if self.client_side else malformed_request
        problem, _length = check(headers)  # h2 itself compares content-length with DATA
        if problem:
            self._stream_error(sid)
            if self.client_side:  # the application waits for this response: it must hear
                out.append(StreamReset(stream_id=sid, error_code=PROTOCOL_ERROR, remote=False))
            return
        if not self.client_side and self._refuse_above is not None and sid > self._refuse_above:
            self._reset_now.add(sid)
            self.reset(sid, REFUSED_STREAM)  # opened after our GOAWAY: never processed
            return
        end = ev.stream_ended is not None
        out.append(HeadersReceived(stream_id=sid, headers=headers, end_stream=end))

    def _on_trailers(self, ev: h2e.TrailersReceived, out: list[Event]) -> None:
        sid = ev.stream_id or 0
        headers: RawHeaders = ev.headers or []
        if any(k[:1] == b":" for k, _ in headers):  # RFC 9113 §8.1: no pseudo-fields in trailers
            self._stream_error(sid)
            out.append(StreamReset(stream_id=sid, error_code=PROTOCOL_ERROR, remote=False))
            return
        out.append(TrailersReceived(stream_id=sid, headers=headers))

    def _stream_error(self, stream_id: int) -> None:
        self._reset_now.add(stream_id)  # h2 may have more events of it in this batch
        self.stream_errors += 1
        self.reset(stream_id, PROTOCOL_ERROR)
        self.guard.stream_refused_or_malformed()

    # -- output -------------------------------------------------------------------------

    def next_stream_id(self) -> int:
        return int(self._h2.get_next_available_stream_id())

    def send_headers(self, stream_id: int, headers: RawHeaders, end_stream: bool = False) -> None:
        try:
            self._h2.send_headers(stream_id, headers, end_stream=end_stream)
        except h2.exceptions.StreamClosedError as exc:
            raise StreamGone(f"stream {stream_id} is closed") from exc

    def send_data(self, stream_id: int, data: bytes | memoryview, end_stream: bool = False) -> int:
        """Send what the windows allow of `data`; return how many bytes went.

        `end_stream` applies only once all of `data` went.
        """
        h = self._h2
        try:
            if not data:
                if end_stream:
                    h.send_data(stream_id, b"", end_stream=True)
                return 0
            window = h.local_flow_control_window(stream_id)
            frame = h.max_outbound_frame_size
            sent, total = 0, len(data)
            while sent < total and window > 0:
                n = min(total - sent, window, frame)
                last = end_stream and sent + n == total
                h.send_data(stream_id, data[sent : sent + n], end_stream=last)
                self.guard.data_frames_sent += 1
                sent += n
                window -= n
            return sent
        except (h2.exceptions.StreamClosedError, KeyError) as exc:  # KeyError: h2 forgot it
            raise StreamGone(f"stream {stream_id} is closed") from exc

    def end_stream(self, stream_id: int) -> None:
        self.send_data(stream_id, b"", end_stream=True)

    def window(self, stream_id: int) -> int:
        """Bytes `send_data` could send on `stream_id` now."""
        try:
            return int(self._h2.local_flow_control_window(stream_id))
        except h2.exceptions.StreamClosedError as exc:
            raise StreamGone(f"stream {stream_id} is closed") from exc

    def ack(self, stream_id: int, flow_length: int) -> None:
        """The application consumed `flow_length` bytes of `stream_id`: reopen the windows."""
        if flow_length:
            self._h2.acknowledge_received_data(flow_length, stream_id)

    def reset(self, stream_id: int, error_code: int = CANCEL) -> None:
        """RST_STREAM, if the stream is still open (a reset of a closed stream is a no-op)."""
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._h2.reset_stream(stream_id, error_code)

    # -- state --------------------------------------------------------------------------

    def pending_frame_bytes(self) -> int:
        """Octets still missing from the frame h2 has begun to buffer (0: none begun).

        h2 checks a frame's size only once all of it arrived; differential tests
        use this to complete an oversized frame the lean codec refused at its header.
        """
        buf = self._h2.incoming_buffer._data
        if len(buf) < 9:
            return 0
        return max(0, 9 + int.from_bytes(buf[:3], "big") - len(buf))

    def content_length_owed(self, stream_id: int) -> int | None:
        """Octets the stream's content-length still expects (None: it declared none).

        h2 compares content-length with DATA only when DATA arrives, so a body a
        header block ends short of it passes; the differential judge reads this
        to tell that case apart (`differential.py`).
        """
        stream = self._h2.streams.get(stream_id)
        expected = getattr(stream, "_expected_content_length", None)
        if expected is None:
            return None
        return int(expected) - int(stream._actual_content_length)  # type: ignore[union-attr]

    @property
    def remote_max_streams(self) -> int:
        return int(self._h2.remote_settings.max_concurrent_streams)

    @property
    def open_outbound_streams(self) -> int:
        return int(self._h2.open_outbound_streams)

    @property
    def highest_inbound_stream_id(self) -> int:
        return int(self._h2.highest_inbound_stream_id)


class _AdvertisedOnly(h2.settings.Settings):
    """Local settings whose MAX_CONCURRENT_STREAMS is advertised but enforced by us.

    h2 treats a stream past the limit as a connection error; RFC 9113 §5.1.2 allows
    a stream error instead, which is what Envoy sends: the one stream is refused
    (`FloodGuard`) and the connection's other streams live on.
    """

    @property
    def max_concurrent_streams(self) -> int:
        return 2**31 - 1

    @max_concurrent_streams.setter
    def max_concurrent_streams(self, value: int) -> None:
        self[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = value


def _survive_graceful_goaway(conn: h2.connection.H2Connection) -> None:
    """Keep processing the streams a GOAWAY left running (RFC 9113 §6.8).

    h2's state machine closes the connection on any GOAWAY it receives, and
    drops frames queued before it, so the responses still owed on streams at
    or below the peer's last stream id would be lost: that is how Envoy, grpc
    and nginx drain. For this one connection, receiving a GOAWAY leaves the
    state open; our transport stops opening streams and fails those above the
    last stream id itself.
    """
    sm = conn.state_machine
    table = dict(sm._transitions)
    cs, ci = h2.connection.ConnectionState, h2.connection.ConnectionInputs
    for state in (cs.IDLE, cs.CLIENT_OPEN, cs.SERVER_OPEN):  # IDLE: a GOAWAY before any stream
        table[(state, ci.RECV_GOAWAY)] = (None, state)
    sm._transitions = table
    conn.clear_outbound_data_buffer = lambda: None  # type: ignore[method-assign]
