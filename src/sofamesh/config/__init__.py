"""Configuration: frozen, validated at load, every problem reported with its path."""

from sofamesh.config.load import load_config, read_document
from sofamesh.config.model import (
    Address,
    EndpointMeta,
    LimitsConfig,
    ListenerConfig,
    LocalApiConfig,
    MeshConfig,
    PolicyConfig,
)
from sofamesh.config.structure import ConfigError, structure

__all__ = [
    "Address",
    "ConfigError",
    "EndpointMeta",
    "LimitsConfig",
    "ListenerConfig",
    "LocalApiConfig",
    "MeshConfig",
    "PolicyConfig",
    "load_config",
    "read_document",
    "structure",
]
