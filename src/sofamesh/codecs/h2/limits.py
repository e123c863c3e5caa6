"""Limits of one HTTP/2 connection: one frozen value, advertised in SETTINGS and enforced."""

from __future__ import annotations

from typing import Any

import attrs

MIN_FRAME_SIZE = 16_384  # RFC 9113 §6.5.2: SETTINGS_MAX_FRAME_SIZE's floor and default
MAX_FRAME_SIZE = 16_777_215
MAX_WINDOW = 2**31 - 1  # RFC 9113 §6.9.1


def _positive(_inst: Any, attr: attrs.Attribute[Any], value: int) -> None:
    if value <= 0:
        raise ValueError(f"{attr.name} must be positive, got {value}")


def _frame_size(_inst: Any, attr: attrs.Attribute[Any], value: int) -> None:
    if not MIN_FRAME_SIZE <= value <= MAX_FRAME_SIZE:
        raise ValueError(f"{attr.name} must be within {MIN_FRAME_SIZE}..{MAX_FRAME_SIZE}")


def _window(_inst: Any, attr: attrs.Attribute[Any], value: int) -> None:
    if not 0 < value <= MAX_WINDOW:
        raise ValueError(f"{attr.name} must be within 1..{MAX_WINDOW}, got {value}")


@attrs.frozen(slots=True)
class H2Limits:
    """What a peer may do on one connection (Envoy's `http2_protocol_options` names in brackets).

    - `max_concurrent_streams` [max_concurrent_streams]: advertised; a peer
      that opens more breaks the settings it acknowledged (GOAWAY
      PROTOCOL_ERROR). gRPC servers advertise 100 by convention.
    - `max_header_list_size` (RFC 9113 §6.5.2): decoded header bytes per
      block; above it the connection ends (GOAWAY ENHANCE_YOUR_CALM), since
      HPACK state cannot be kept after a half-decoded block.
    - `max_frame_size`: the largest frame payload we accept (FRAME_SIZE_ERROR).
    - `stream_window` [initial_stream_window_size] and `connection_window`
      [initial_connection_window_size]: how much a peer may send before we
      read; data is acknowledged only once the application consumed it, so
      these bound what one stream and one connection can buffer.

    Floods (`codecs/h2/guard.py`; Envoy's defaults, their names as Envoy's):
    `max_outbound_control_frames` (PING and SETTINGS ACKs owed to a peer that
    does not read), `max_inbound_window_update_frames_per_data_frame_sent`,
    `max_inbound_priority_frames_per_stream`, and
    `premature_reset_total_stream_count` (the rapid reset's threshold, Envoy's
    runtime key `overload.premature_reset_total_stream_count`). Each ends the
    connection with GOAWAY(ENHANCE_YOUR_CALM).
    """

    max_concurrent_streams: int = attrs.field(default=1000, validator=_positive)
    max_header_list_size: int = attrs.field(default=64 * 1024, validator=_positive)
    max_frame_size: int = attrs.field(default=MIN_FRAME_SIZE, validator=_frame_size)
    stream_window: int = attrs.field(default=1024 * 1024, validator=_window)
    connection_window: int = attrs.field(default=16 * 1024 * 1024, validator=_window)
    max_outbound_control_frames: int = attrs.field(default=1000, validator=_positive)
    max_inbound_window_update_frames_per_data_frame_sent: int = attrs.field(
        default=10, validator=_positive
    )
    max_inbound_priority_frames_per_stream: int = attrs.field(default=100, validator=_positive)
    premature_reset_total_stream_count: int = attrs.field(default=500, validator=_positive)


DEFAULT_H2_LIMITS = H2Limits()
