"""`sofamesh.testing`: test SDK apps and sidecar apps together, in a few lines of pytest.

This module is the pytest plugin (the `pytest11` entry point of `sofamesh[testing]`, or
`-p sofamesh.testing`); it also exports the helpers tests import. See docs/testing.md.

Fixtures: `sofamesh_registry`, `sofamesh_sidecar`, `sofamesh_mesh`, `sofamesh_provider`,
`sofamesh_processes`. Unit tests without processes or sockets: `mesh_for`.
"""

from sofamesh.testing.harness import Harness, mesh_for
from sofamesh.testing.helpers import (
    Target,
    assert_reached,
    call_stats,
    calls_to,
    fault_applied,
    fault_rule,
    healthy_endpoints,
    rules_applied,
    wait_endpoints,
)
from sofamesh.testing.plugin import (
    MeshFactory,
    ProviderFactory,
    SidecarFactory,
    pytest_runtest_makereport,
    sofamesh_mesh,
    sofamesh_processes,
    sofamesh_provider,
    sofamesh_registry,
    sofamesh_sidecar,
)
from sofamesh.testing.process import (
    MeshProcess,
    Processes,
    ProcessFailed,
    RulesRejected,
    SidecarProcess,
)
from sofamesh.testing.providers import SHAPES, ProviderHandle, serve_provider

__all__ = [
    "SHAPES",
    "Harness",
    "MeshFactory",
    "MeshProcess",
    "ProcessFailed",
    "Processes",
    "ProviderFactory",
    "ProviderHandle",
    "RulesRejected",
    "SidecarFactory",
    "SidecarProcess",
    "Target",
    "assert_reached",
    "call_stats",
    "calls_to",
    "fault_applied",
    "fault_rule",
    "healthy_endpoints",
    "mesh_for",
    "pytest_runtest_makereport",
    "rules_applied",
    "serve_provider",
    "sofamesh_mesh",
    "sofamesh_processes",
    "sofamesh_provider",
    "sofamesh_registry",
    "sofamesh_sidecar",
    "wait_endpoints",
]
