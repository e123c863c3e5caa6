"""The lean HTTP/2 codec's control frames: WINDOW_UPDATE, RST_STREAM, PING and SETTINGS.

Each is checked as h2 checks it (size, then range), counted on the flood guard
where it can flood, and applied to `LeanState`'s windows, streams or settings.
`LeanH2Codec` (lean.py), the reader of every frame, is built on `LeanControl`.
"""

from __future__ import annotations

from sofamesh.codecs.h2 import frames as f
from sofamesh.codecs.h2.events import Event, StreamReset, WindowOpened
from sofamesh.codecs.h2.lean_state import ConnError, LeanState
from sofamesh.codecs.h2.lean_stream import CLOSED_BY_RESET

_MAX_WINDOW = 2**31 - 1
RST_BEFORE_STREAMS = "RST_STREAM before any stream"


class LeanControl(LeanState):
    """The control frames' checks and effects, on the streams and windows of `LeanState`."""

    def _window_update(self, sid: int, payload: bytes, out: list[Event]) -> None:
        if len(payload) != 4:
            raise ConnError(f.FRAME_SIZE_ERROR, "WINDOW_UPDATE of the wrong size")
        self.guard.window_update()
        increment = f.u32(payload)  # with the reserved bit set: out of range, as h2 has it
        if not 0 < increment <= _MAX_WINDOW:
            raise ConnError(f.PROTOCOL_ERROR, f"WINDOW_UPDATE of {increment}")
        if not sid:
            self._send_window += increment
            if self._send_window > _MAX_WINDOW:
                raise ConnError(f.FLOW_CONTROL_ERROR, "connection window above 2**31-1")
            out.append(WindowOpened(0))
            return
        stream = self._streams.get(sid)
        if stream is None:
            self._idle_check(sid)
            return
        stream.send_window += increment
        if stream.send_window > _MAX_WINDOW:
            self.reset(sid, f.FLOW_CONTROL_ERROR)
            out.append(StreamReset(sid, f.FLOW_CONTROL_ERROR, True))
            return
        out.append(WindowOpened(sid))

    def _rst_stream(self, sid: int, payload: bytes, out: list[Event]) -> None:
        if len(payload) != 4:
            raise ConnError(f.FRAME_SIZE_ERROR, "RST_STREAM of the wrong size")
        stream = self._streams.get(sid)
        if stream is None:
            if not self.highest_inbound_stream_id and not self._highest_outbound:
                # No stream was ever opened, so this one is idle: RFC 9113 §6.4 (and h2,
                # unless a received ALTSVC frame moved its connection state) call it an error.
                raise ConnError(f.PROTOCOL_ERROR, RST_BEFORE_STREAMS)
            return  # already closed, or idle (which h2 ignores once streams exist)
        if not self.client_side and not stream.headers_out:
            self.guard.premature()
        self._close(stream, CLOSED_BY_RESET)
        code = f.u32(payload)
        out.append(StreamReset(sid, code, True))

    def _ping(self, flags: int, payload: bytes) -> None:
        if len(payload) != 8:
            raise ConnError(f.FRAME_SIZE_ERROR, "PING of the wrong size")
        if not flags & f.ACK:
            self.guard.owe_ack()
            self._out.append(f.ping_ack(payload))

    def _settings(self, flags: int, payload: bytes, out: list[Event]) -> None:
        if flags & f.ACK:
            if payload:  # RFC 9113 §6.5 says FRAME_SIZE_ERROR; h2 says PROTOCOL_ERROR
                raise ConnError(f.PROTOCOL_ERROR, "SETTINGS ACK with a payload")
            self._our_settings_acked()
            return
        if len(payload) % 6:
            raise ConnError(f.FRAME_SIZE_ERROR, "SETTINGS of the wrong size")
        self.guard.owe_ack()
        out.extend(self._peer_settings(f.setting_pairs(payload)))
        self._out.append(f.SETTINGS_ACK)
