"""`limits.path_with_escaped_slashes_action`: validated with its path, and honoured by listeners."""

from __future__ import annotations

import pytest

from sofamesh.codecs.http1 import Http1ServerCodec
from sofamesh.codecs.http1.errors import HttpProtocolError
from sofamesh.config import ConfigError, load_config
from sofamesh.config.model import LimitsConfig
from sofamesh.protocols.http.support import http1_server


def listener(action: str) -> dict[str, object]:
    return {
        "protocol": "http",
        "listen": "127.0.0.1:0",
        "upstream": "127.0.0.1:1",
        "limits": {"path_with_escaped_slashes_action": action},
    }


def test_an_unknown_action_is_reported_with_its_path() -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"app": "a", "inbound": [listener("DECODE_SOMETIMES")]}, env={})
    assert "inbound[0].limits.path_with_escaped_slashes_action" in str(info.value)


def test_the_default_refuses_escaped_slashes() -> None:
    assert LimitsConfig().path_with_escaped_slashes_action == "REJECT_REQUEST"


@pytest.mark.parametrize(
    ("action", "target"),
    [
        ("REJECT_REQUEST", None),
        ("KEEP_UNCHANGED", "/a%2Fb/c"),
        ("UNESCAPE_AND_FORWARD", "/a/b/c"),
    ],
)
def test_a_listener_applies_its_action(action: str, target: str | None) -> None:
    cfg = load_config({"app": "a", "inbound": [listener(action)]}, env={})
    server = http1_server(lambda req, conn=None: None, cfg.inbound[0].limits)  # type: ignore[arg-type, return-value]
    codec = Http1ServerCodec(server.config.limits)
    codec.receive_data(b"GET /a%2fb//./c HTTP/1.1\r\nHost: s\r\n\r\n")
    if target is None:
        with pytest.raises(HttpProtocolError) as info:
            codec.next_request()
        assert info.value.status == 400
    else:
        req = codec.next_request()
        assert req is not None and req.target == target
