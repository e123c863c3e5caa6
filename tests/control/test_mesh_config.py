"""The data plane's `control`, `control_token` and `workspace` keys, validated with their paths."""

from __future__ import annotations

import pytest

from sofamesh.config import ConfigError, load_config
from sofamesh.config.control_urls import ControlUrls


def test_control_urls_parse_one_or_several() -> None:
    assert ControlUrls.parse("http://a:1").addresses == (("a", 1),)
    both = ControlUrls.parse("http://a:1, http://b:2")
    assert both.addresses == (("a", 1), ("b", 2)) and str(both) == "http://a:1,http://b:2"
    assert ControlUrls.parse(["http://a:1", "http://b:2"]) == both
    secure = ControlUrls.parse("https://a:1,https://b:2")
    assert secure.secure and str(secure) == "https://a:1,https://b:2" and not both.secure
    for bad in ("a:1", "ftp://a:1", "http://a:1,https://b:2", "http://a", "http://a:1/x", "", 7):
        with pytest.raises(ValueError):
            ControlUrls.parse(bad)


def test_control_needs_a_workspace_and_excludes_other_rule_sources() -> None:
    with pytest.raises(ConfigError) as e:
        load_config({"app": "x", "control": "http://a:1", "rules_file": "r.yaml"}, env={})
    assert any(p.startswith("workspace:") for p in e.value.problems)
    assert any(p.startswith("control:") for p in e.value.problems)
    assert any(p.startswith("control_token:") for p in e.value.problems)
    with pytest.raises(ConfigError) as e:
        load_config({"app": "x", "control": "ftp://a", "workspace": "w"}, env={})
    assert e.value.problems[0].startswith("control: expected http://HOST:PORT")
    cfg = load_config(
        {"app": "x", "control": "http://a:1", "workspace": "w", "control_token": "t"}, env={}
    )
    assert cfg.control is not None and cfg.workspace == "w"
    assert load_config({"app": "x"}, env={}).control is None  # without it, nothing changes
