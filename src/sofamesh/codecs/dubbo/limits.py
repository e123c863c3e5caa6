"""Size limits the Dubbo decoder enforces before it buffers a frame's body."""

from __future__ import annotations

import attrs

from sofamesh.codecs.dubbo.wire import MAX_INT_LENGTH


@attrs.frozen(kw_only=True)
class DubboLimits:
    """Per-connection limits; a frame over them closes the connection.

    The default is Dubbo's own `payload` default, 8 MiB (`Constants.DEFAULT_PAYLOAD`).
    """

    max_body_size: int = attrs.field(
        default=8 * 1024 * 1024,
        validator=[attrs.validators.ge(0), attrs.validators.le(MAX_INT_LENGTH)],
    )


DEFAULT_LIMITS = DubboLimits()
