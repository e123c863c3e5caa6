"""The codec's flood and rapid-reset defences (codecs/h2/guard.py), frame by frame.

Each limit is passed by a client codec paired with a server codec in memory; the server
must end the connection with GOAWAY(ENHANCE_YOUR_CALM), and the same traffic just under
the limit, or as a well-behaved peer sends it, must not.
"""

from __future__ import annotations

import pytest
from hyperframe.frame import PingFrame, PriorityFrame, SettingsFrame, WindowUpdateFrame
from tests.codecs.h2.test_h2_codec import REQ, goaway_code, pair, shuttle

from sofamesh.codecs.h2 import ENHANCE_YOUR_CALM, H2Codec, H2ConnectionError, H2Limits

RESPONSE = [(b":status", b"200")]


def flooded(s: H2Codec, wire: bytes) -> str:
    """Feed `wire` to the server; the reason it ended the connection with ENHANCE_YOUR_CALM."""
    with pytest.raises(H2ConnectionError) as exc:
        s.receive_data(wire)
    assert exc.value.error_code == ENHANCE_YOUR_CALM
    assert goaway_code(s.data_to_send()) == ENHANCE_YOUR_CALM
    return exc.value.reason


def open_and_reset(c: H2Codec, n: int) -> bytes:
    for _ in range(n):
        sid = c.next_stream_id()
        c.send_headers(sid, REQ, end_stream=True)
        c.reset(sid)
    return c.data_to_send()


def test_rapid_reset_ends_the_connection_at_half_the_threshold() -> None:
    c, s = pair()
    s.receive_data(open_and_reset(c, 249))  # under the limit: served as usual
    assert "premature_reset_total_stream_count" in flooded(s, open_and_reset(c, 1))
    assert s.guard.premature_resets == 250


def test_rapid_reset_threshold_is_configurable() -> None:
    c, s = pair(server_limits=H2Limits(premature_reset_total_stream_count=20))
    assert "10 of 10 streams" in flooded(s, open_and_reset(c, 30))


def test_resets_after_the_response_began_are_not_premature() -> None:
    c, s = pair(server_limits=H2Limits(premature_reset_total_stream_count=20))
    for _ in range(100):
        sid = c.next_stream_id()
        c.send_headers(sid, REQ, end_stream=True)
        shuttle(c, s)
        s.send_headers(sid, RESPONSE)
        shuttle(c, s)
        c.reset(sid)  # a client cancelling a response it no longer wants
        shuttle(c, s)
    assert s.guard.premature_resets == 0


def test_malformed_streams_count_as_premature_resets() -> None:
    c, s = pair(server_limits=H2Limits(premature_reset_total_stream_count=20))
    for _ in range(9):
        c.send_headers(c.next_stream_id(), [(b":method", b"GET")], end_stream=True)
    s.receive_data(c.data_to_send())
    c.send_headers(c.next_stream_id(), [(b":method", b"GET")], end_stream=True)
    flooded(s, c.data_to_send())


def pings(n: int) -> bytes:
    return b"".join(PingFrame(0, opaque_data=i.to_bytes(8, "big")).serialize() for i in range(n))


def test_ping_acks_owed_to_a_peer_that_does_not_read_are_capped() -> None:
    _, s = pair()
    s.receive_data(pings(1000))  # the writer has not taken the ACKs: they are still owed
    assert "max_outbound_control_frames" in flooded(s, pings(1))


def test_pings_whose_acks_are_sent_do_not_trip() -> None:
    _, s = pair()
    for _ in range(5):
        s.receive_data(pings(1000))
        s.data_to_send()  # the writer took them


def test_settings_flood_is_capped() -> None:
    _, s = pair(server_limits=H2Limits(max_outbound_control_frames=10))
    settings = SettingsFrame(0, settings={0x4: 65535}).serialize()
    s.receive_data(settings * 10)
    flooded(s, settings)


def test_window_update_flood_without_data_sent_is_capped() -> None:
    _, s = pair()
    one_byte = WindowUpdateFrame(0, window_increment=1).serialize()
    s.receive_data(one_byte * (5 - s.guard.window_updates))  # Envoy's allowance before DATA
    assert "WINDOW_UPDATE" in flooded(s, one_byte)


def test_window_updates_follow_the_data_sent() -> None:
    c, s = pair()
    sid = c.next_stream_id()
    c.send_headers(sid, REQ, end_stream=True)
    shuttle(c, s)
    s.send_headers(sid, RESPONSE)
    for _ in range(3):
        s.send_data(sid, b"x" * 100)
    shuttle(c, s)
    allowed = 5 + 2 * (1 + 10 * 3) - s.guard.window_updates  # 1 stream, 3 DATA frames sent
    s.receive_data(WindowUpdateFrame(sid, window_increment=1).serialize() * allowed)
    flooded(s, WindowUpdateFrame(sid, window_increment=1).serialize())


def test_priority_flood_is_capped() -> None:
    _, s = pair()
    frames = b"".join(PriorityFrame(2 * i + 1, depends_on=0).serialize() for i in range(100))
    s.receive_data(frames)  # 100 for the connection's (1 + 0 streams)
    assert "PRIORITY" in flooded(s, PriorityFrame(301, depends_on=0).serialize())
