"""`registry_apis` keys: loopback only, each API's own keys, every problem reported."""

from __future__ import annotations

import pytest

from sofamesh.config import ConfigError, load_config


def _load(apis: dict[str, object]) -> object:
    return load_config({"app": "shop", "registry_apis": apis}, env={})


def test_defaults_are_the_original_registries() -> None:
    cfg = _load({"eureka": {"listen": 8761}, "nacos": {"listen": "127.0.0.1:8848"}})
    apis = cfg.registry_apis  # type: ignore[attr-defined]
    assert (apis.eureka.listen.port, apis.eureka.lease) == (8761, 90.0)
    assert (apis.nacos.lease, apis.nacos.delete_after) == (15.0, 30.0)
    assert apis.consul is None and apis.enabled


def test_bad_keys_are_each_reported() -> None:
    with pytest.raises(ConfigError) as info:
        _load(
            {
                "eureka": {"listen": "0.0.0.0:8761", "delete_after": 3},
                "consul": {"listen": 8500, "lease": 5},
                "max_services": 0,
            }
        )
    text = "\n".join(info.value.problems)
    assert "loopback only" in text
    assert "registry_apis.eureka.delete_after" in text
    assert "registry_apis.consul.lease" in text
    assert "registry_apis.max_services" in text
