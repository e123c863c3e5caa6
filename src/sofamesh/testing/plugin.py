"""The pytest plugin: fixtures that start sidecars, SDK meshes and providers on one registry.

Loaded by the `pytest11` entry point of `sofamesh[testing]` (or `-p sofamesh.testing`). Async
fixtures run under anyio's pytest plugin, on whichever backends the test's `anyio_backend` names.
Every process a test starts is stopped after it, and on failure each one's log is attached to
the test's report.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

import sofamesh
from sofamesh.sdk.mesh import Mesh
from sofamesh.testing.process import Processes, SidecarProcess
from sofamesh.testing.providers import ProviderHandle, serve_provider

PROCESSES = pytest.StashKey[Processes]()


def backend_name(anyio_backend: Any) -> str:
    """The backend of an `anyio_backend` value (a name, or a (name, options) pair)."""
    return str(anyio_backend if isinstance(anyio_backend, str) else anyio_backend[0])


class SidecarFactory:
    """`await sofamesh_sidecar(app=..., inbound=[...], outbound=[...], rules=...)`."""

    def __init__(self, processes: Processes, registry: str) -> None:
        self._processes = processes
        self._registry = registry

    async def __call__(
        self,
        app: str,
        *,
        inbound: Sequence[dict[str, Any]] = (),
        outbound: Sequence[dict[str, Any]] = (),
        rules: dict[str, Any] | None = None,
        **config: Any,
    ) -> SidecarProcess:
        """Start a sidecar for `app` on the test's registry; returns once it is ready.

        Listeners default to free loopback ports; an inbound `upstream` may be a started
        process (its READY port is used). Other keys are mesh config (`policy`, `metadata`...).
        """
        cfg = {"app": app, "registry": self._registry, **config}
        cfg |= {"inbound": list(inbound), "outbound": list(outbound)}
        return await self._processes.sidecar(cfg, rules)


class MeshFactory:
    """`async with sofamesh_mesh(app=..., mode="sdk"|"sidecar", sidecar=handle) as mesh:`."""

    def __init__(self, registry: str) -> None:
        self._registry = registry

    def __call__(
        self,
        app: str,
        *,
        mode: str = "sdk",
        sidecar: SidecarProcess | None = None,
        rules: dict[str, Any] | None = None,
        **config: Any,
    ) -> AbstractAsyncContextManager[Mesh]:
        cfg: dict[str, Any] = {"app": app, "mode": mode, "registry": self._registry, **config}
        if mode == "sidecar":
            if sidecar is None:
                raise ValueError("mode='sidecar' needs the sidecar handle to talk to")
            cfg["sidecar"] = sidecar.admin_address
        if rules is not None:
            cfg["rules"] = rules
        return sofamesh.open_mesh(cfg, env={})


class ProviderFactory:
    """`async with sofamesh_provider("sidecar", "pkg.app:app", services=[...]) as provider:`."""

    def __init__(self, processes: Processes, registry: str) -> None:
        self._processes = processes
        self._registry = registry

    def __call__(
        self, shape: str, target: str, services: Sequence[str], **options: Any
    ) -> AbstractAsyncContextManager[ProviderHandle]:
        """See `sofamesh.testing.providers.serve_provider` for the shapes and options."""
        return serve_provider(self._processes, self._registry, shape, target, services, **options)


@pytest.fixture
def sofamesh_registry(tmp_path: Path) -> str:
    """A fresh embedded registry (a `file://` directory of this test's own) as a URL."""
    return f"file://{tmp_path}/sofamesh-registry?poll=0.05"


@pytest.fixture
async def sofamesh_processes(
    tmp_path: Path, anyio_backend: Any, request: pytest.FixtureRequest
) -> AsyncIterator[Processes]:
    """The owner of every process the test starts; all are stopped after the test."""
    workdir = tmp_path / "sofamesh-logs"
    workdir.mkdir(exist_ok=True)
    async with Processes(workdir, backend_name(anyio_backend)) as processes:
        request.node.stash[PROCESSES] = processes
        yield processes


@pytest.fixture
def sofamesh_sidecar(sofamesh_processes: Processes, sofamesh_registry: str) -> SidecarFactory:
    """A factory starting real `python -m sofamesh.sidecar` processes (see `SidecarFactory`)."""
    return SidecarFactory(sofamesh_processes, sofamesh_registry)


@pytest.fixture
def sofamesh_mesh(sofamesh_registry: str) -> MeshFactory:
    """A factory of in-process SDK meshes on the test's registry (see `MeshFactory`)."""
    return MeshFactory(sofamesh_registry)


@pytest.fixture
def sofamesh_provider(sofamesh_processes: Processes, sofamesh_registry: str) -> ProviderFactory:
    """A factory running a provider app in any shape (see `sofamesh.testing.providers`)."""
    return ProviderFactory(sofamesh_processes, sofamesh_registry)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On failure, each process's log becomes a section of the report."""
    report = yield
    processes = item.stash.get(PROCESSES, None)
    if report.failed and processes is not None:
        for p in processes.started:
            report.sections.append((f"sofamesh: {p.name} log", p.log() or "(empty)\n"))
    return report
