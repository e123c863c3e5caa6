"""Load a `MeshConfig` from a file (YAML or JSON), a mapping, and the environment.

Environment variables override the file, so an app moves from SDK to sidecar
mode without a code change: ``SOFAMESH_MODE=sidecar``.

| variable | key |
|---|---|
| SOFAMESH_CONFIG | path of the config file (when none is given) |
| SOFAMESH_APP | app |
| SOFAMESH_MODE | mode (sdk or sidecar) |
| SOFAMESH_REGISTRY | registry |
| SOFAMESH_SIDECAR | sidecar (host:port of the local sidecar's admin API) |
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sofamesh.config.model import MeshConfig
from sofamesh.config.structure import ConfigError, structure
from sofamesh.registry import validate_registry_url

ENV_KEYS = {
    "SOFAMESH_APP": "app",
    "SOFAMESH_MODE": "mode",
    "SOFAMESH_REGISTRY": "registry",
    "SOFAMESH_SIDECAR": "sidecar",
}


def read_document(path: str | os.PathLike[str]) -> Any:
    """Parse a YAML or JSON file (JSON is YAML, but its errors read better from json)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError([f"{p}: cannot read: {e.strerror}"]) from None
    try:
        if p.suffix == ".json":
            return json.loads(text)
        return _yaml(text)
    except ValueError as e:
        raise ConfigError(
            [f"{p}: not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {e}"]
        ) from None


def _yaml(text: str) -> Any:
    """YAML parsed, its errors as ValueError; yaml is loaded only when a document needs it."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(str(e)) from None


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> MeshConfig:
    """Build and validate the config; raises `ConfigError` naming every problem."""
    env = os.environ if env is None else env
    if source is None and env.get("SOFAMESH_CONFIG"):
        source = env["SOFAMESH_CONFIG"]
    if source is None:
        data: Any = {}
    elif isinstance(source, Mapping):
        data = dict(source)
    else:
        data = read_document(source)
    if not isinstance(data, dict):
        raise ConfigError([f"(top level): expected a mapping, got {type(data).__name__}"])
    for var, key in ENV_KEYS.items():
        if env.get(var):
            data[key] = env[var]
    data.update({k: v for k, v in overrides.items() if v is not None})
    problems: list[str] = []
    if isinstance(data.get("registry"), str):
        problem = validate_registry_url(data["registry"])
        if problem:
            problems.append(f"registry: {problem}")
    try:
        config = structure(MeshConfig, data)
    except ConfigError as e:
        raise ConfigError(problems + e.problems) from None
    problems += _cross_checks(config)
    if config.control is not None and not (
        config.control_token or env.get("SOFAMESH_CONTROL_TOKEN")
    ):
        problems.append("control_token: required with control (or SOFAMESH_CONTROL_TOKEN)")
    if problems:
        raise ConfigError(problems)
    return config


def _cross_checks(config: MeshConfig) -> list[str]:
    """Problems no single field shows: listeners that contradict each other or their role."""
    problems = []
    seen: dict[tuple[str, int], str] = {}
    listeners = [("inbound", i, lc) for i, lc in enumerate(config.inbound)]
    listeners += [("outbound", i, lc) for i, lc in enumerate(config.outbound)]
    for side, i, lc in listeners:
        where = f"{side}[{i}]"
        if side == "inbound" and lc.services and lc.upstream is None:
            problems.append(f"{where}.upstream: required when services are published")
        if side == "outbound" and (lc.upstream is not None or lc.services):
            problems.append(f"{where}: outbound listeners take no upstream or services")
        if side == "outbound" and lc.catch_all:
            problems.append(f"{where}.catch_all: only inbound listeners forward unknown services")
        if side == "inbound" and lc.catch_all and lc.upstream is None:
            problems.append(f"{where}.upstream: required when catch_all is set")
        key = (lc.listen.host, lc.listen.port)
        if lc.listen.port and key in seen:
            problems.append(f"{where}.listen: {lc.listen} is already used by {seen[key]}")
        seen.setdefault(key, where)
    if config.control is not None:
        if config.workspace is None:
            problems.append("workspace: required with control")
        if config.rules is not None or config.rules_file or config.rules_key:
            problems.append(
                "control: the control plane pushes the rules; drop rules/rules_file/rules_key"
            )
    if config.tls.enabled and config.tls.cert is None and config.control is None:
        problems.append(
            f"tls: mode {config.tls.mode} needs cert, key and trust_bundle, "
            "or control: for an identity the control plane issues"
        )
    admin = config.admin
    if admin and admin.port and (admin.host, admin.port) in seen:
        problems.append(f"admin: {admin} is already used by {seen[(admin.host, admin.port)]}")
    return problems
