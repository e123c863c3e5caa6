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
            {"protocol": "htp", "listen": "8080", "bogus": 1},
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
        "inbound[0].listen: expected host:port, got '8080'",
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
