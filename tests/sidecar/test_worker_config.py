"""`workers:` in the config, and the config a worker is handed (sidecar/supervisor.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sofamesh.config import ConfigError, MeshConfig, load_config
from sofamesh.config.structure import structure
from sofamesh.sidecar.admin import config_to_data
from sofamesh.sidecar.supervisor import worker_argv, worker_config

FULL: dict[str, Any] = {
    "app": "orders",
    "registry": "file:///tmp/reg",
    "admin": "127.0.0.1:15000",
    "workers": 4,
    "rules": {"faults": []},
    "services": {"com.example.Stock": {"timeout": 2.5}},
    "registry_apis": {"eureka": {"listen": "127.0.0.1:8761"}},
    "inbound": [
        {
            "protocol": "http",
            "listen": "0.0.0.0:15006",
            "upstream": "127.0.0.1:8080",
            "services": ["com.example.Orders"],
        }
    ],
    "outbound": [{"protocol": "http", "listen": "127.0.0.1:15001"}],
}


def test_workers_defaults_to_one_and_is_bounded() -> None:
    assert load_config({"app": "a"}).workers == 1
    assert load_config({"app": "a", "workers": 64}).workers == 64
    for bad in (0, 65, -1):
        with pytest.raises(ConfigError, match="workers: must be from 1 to 64"):
            load_config({"app": "a", "workers": bad})


def test_a_worker_gets_the_listeners_without_what_the_main_process_holds() -> None:
    config = load_config(FULL)
    mine = worker_config(config)
    assert (mine.admin, mine.rules, mine.control, mine.workers) == (None, None, None, 1)
    assert not mine.registry_apis.enabled
    assert (mine.inbound, mine.outbound, mine.services) == (
        config.inbound,
        config.outbound,
        config.services,
    )
    # As the hello carries it: JSON, back into the same frozen config.
    carried = json.loads(json.dumps(config_to_data(mine)))
    assert structure(MeshConfig, carried) == mine


def test_workers_start_on_the_main_process_backend_and_log_level() -> None:
    argv = worker_argv("trio", False, 30, "json")
    assert argv[-1] == "--worker" and "--no-uvloop" in argv
    assert argv[argv.index("--backend") + 1] == "trio"
    assert argv[argv.index("--log-level") + 1] == "warning"
    assert argv[argv.index("--log-format") + 1] == "json"
