"""Config: the issue's example loads as written; a bad config names every problem."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sofamesh.config import Address, ConfigError, load_config

# The issue's example, verbatim.
EXAMPLE = textwrap.dedent("""\
    app: orders                        # this app's name: its identity in the registry, metrics and rules
    registry: file:///var/tmp/sofamesh # embedded default for one machine
    admin: 127.0.0.1:15000
    inbound:                           # remote callers -> sidecar -> the local app
      - protocol: http
        listen: 127.0.0.1:15006
        upstream: 127.0.0.1:8080
        services: [com.example.Orders] # published on the app's behalf
    outbound:                          # the local app -> sidecar -> other services
      - protocol: http
        listen: 127.0.0.1:15001
""")


def test_issue_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(EXAMPLE)
    cfg = load_config(path, env={})
    assert cfg.app == "orders" and cfg.admin == Address("127.0.0.1", 15000)
    assert cfg.inbound[0].upstream == Address("127.0.0.1", 8080)
    assert cfg.inbound[0].services == ("com.example.Orders",)
    assert cfg.outbound[0].listen.port == 15001


def test_json_config_and_env_override_mode(tmp_path: Path) -> None:
    path = tmp_path / "mesh.json"
    path.write_text('{"app": "orders", "mode": "sdk"}')
    cfg = load_config(path, env={"SOFAMESH_MODE": "sidecar", "SOFAMESH_SIDECAR": "127.0.0.1:16000"})
    assert cfg.mode == "sidecar" and cfg.sidecar == Address("127.0.0.1", 16000)


def test_every_problem_is_reported_with_its_path() -> None:
    bad = {
        "app": "",
        "registry": "zk://x",
        "inbound": [
            {"protocol": "htp", "listen": "localhost", "bogus": 1},
            {"protocol": "http", "listen": "127.0.0.1:1", "services": ["s"]},
        ],
        "outbound": [{"protocol": "http", "listen": "127.0.0.1:1"}],
        "policy": {"timeout": -1, "balancer": "nope", "outlier": {"max_ejection_percent": 120}},
    }
    with pytest.raises(ConfigError) as info:
        load_config(bad, env={})
    text = "\n".join(info.value.problems)
    for fragment in [
        "app: must be a non-empty name",
        "registry: unknown registry scheme 'zk'",
        "inbound[0].protocol: expected one of",
        "inbound[0].listen: expected host:port, got 'localhost'",
        "inbound[0].bogus: unknown key",
        "policy.timeout: must be positive",
        "policy.balancer:",
        "policy.outlier.max_ejection_percent:",
    ]:
        assert fragment in text, (fragment, text)


def test_cross_checks_run_when_fields_are_valid() -> None:
    bad = {
        "app": "a",
        "inbound": [{"protocol": "http", "listen": "127.0.0.1:1", "services": ["s"]}],
        "outbound": [{"protocol": "http", "listen": "127.0.0.1:1", "upstream": "127.0.0.1:2"}],
    }
    with pytest.raises(ConfigError) as info:
        load_config(bad, env={})
    assert info.value.problems == [
        "inbound[0].upstream: required when services are published",
        "outbound[0]: outbound listeners take no upstream or services",
        "outbound[0].listen: 127.0.0.1:1 is already used by inbound[0]",
    ]


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", env={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("app: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, env={})


def test_listener_limits_reach_the_servers_that_enforce_them() -> None:
    from sofamesh.protocols.h2.listener import h2_limits
    from sofamesh.protocols.http.support import http1_server

    cfg = load_config(
        {
            "app": "orders",
            "inbound": [
                {
                    "protocol": "grpc",
                    "listen": "127.0.0.1:0",
                    "upstream": "127.0.0.1:1",
                    "services": ["s"],
                    "limits": {
                        "max_concurrent_streams": 10,
                        "max_frame_size": 32768,
                        "stream_window": 65535,
                        "connection_window": 1 << 20,
                        "send_timeout": 5,
                    },
                }
            ],
        },
        env={},
    )
    limits = cfg.inbound[0].limits
    h2 = h2_limits(limits)
    assert (h2.max_concurrent_streams, h2.max_frame_size, h2.stream_window) == (10, 32768, 65535)
    assert h2.connection_window == 1 << 20
    server = http1_server(lambda req, conn: None, limits)  # type: ignore[arg-type,return-value]
    assert server.config.send_timeout == 5


def test_out_of_range_http2_limits_are_reported_with_their_path() -> None:
    bad = {"max_frame_size": 10, "stream_window": 0, "send_timeout": 0}
    listener = {"protocol": "grpc", "listen": "127.0.0.1:0", "limits": bad}
    with pytest.raises(ConfigError) as e:
        load_config({"app": "a", "outbound": [listener]}, env={})
    assert sorted(e.value.problems) == [
        "outbound[0].limits.max_frame_size: must be within 16384..16777215, got 10",
        "outbound[0].limits.send_timeout: must be positive, got 0.0",
        "outbound[0].limits.stream_window: must be within 1..2147483647, got 0",
    ]


def test_the_overload_actions_reach_the_sidecar_and_their_watermarks_are_checked() -> None:
    from sofamesh.sidecar.app import _reclaimer

    cfg = load_config(
        {"app": "a", "overload": {"reset_above": 1.5, "reset_to": 0.5, "trim_heap": False,
                                  "idle_check_interval": 5}},
        env={},
    )  # fmt: skip
    reclaimer = _reclaimer(cfg)
    assert (reclaimer.reset_above, reclaimer.reset_to, reclaimer.trimmer) == (1.5, 0.5, None)
    assert (reclaimer.interval, reclaimer.idle_interval) == (0.25, 5.0)
    assert _reclaimer(load_config({"app": "a"}, env={})).trimmer is not None
    with pytest.raises(ConfigError) as e:
        load_config({"app": "a", "overload": {"trim_interval": 0}}, env={})
    assert e.value.problems == ["overload.trim_interval: must be a positive number, got 0.0"]
    with pytest.raises(ConfigError) as e:
        load_config({"app": "a", "overload": {"reset_to": 2.0}}, env={})
    assert e.value.problems == ["overload: reset_to (2.0) must not be above reset_above (1.0)"]
