"""One call to run a provider app in any shape, so one test body covers them all.

| shape | what runs |
|---|---|
| `sdk` | the app served by an SDK mesh in the test's own process |
| `sdk-process` | the app served by an SDK mesh in a process of its own (can be killed) |
| `sidecar` | the app as a plain upstream process, behind a real sidecar process |

The app is named `module:attr` (see `python -m sofamesh.testing`), so a process can import it.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs

import sofamesh
from sofamesh.testing.process import MeshProcess, Processes, SidecarProcess
from sofamesh.testing.upstream import load_target, serve

SHAPES = ("sdk", "sdk-process", "sidecar")
_PROTOCOL = {"asgi": "http", "grpc": "grpc", "bolt": "bolt"}


@attrs.define
class ProviderHandle:
    """A running provider: its shape, and whatever runs it (a mesh, processes, a sidecar)."""

    shape: str
    services: tuple[str, ...]
    mesh: Any = None  # the `sofamesh.Mesh` of an `sdk` provider
    sidecar: SidecarProcess | None = None
    processes: list[MeshProcess] = attrs.Factory(list)

    def kill(self) -> None:
        """SIGKILL every process of this provider (the app and its sidecar)."""
        if not self.processes:
            raise RuntimeError("an in-process `sdk` provider cannot be killed; use `sdk-process`")
        for p in self.processes:
            p.kill()


@asynccontextmanager
async def serve_provider(
    processes: Processes,
    registry: str,
    shape: str,
    target: str,
    services: Sequence[str],
    *,
    kind: str = "asgi",
    app: str = "provider",
    version: str = "",
    rules: dict[str, Any] | None = None,
    sidecar_config: dict[str, Any] | None = None,
) -> AsyncIterator[ProviderHandle]:
    """Run `target` (`module:attr`) as `services` in `shape`; stopped when the block ends.

    `rules` (inbound rules) go to the provider's sidecar, or to its mesh in `sdk` shape.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown provider shape {shape!r} (expected one of {', '.join(SHAPES)})")
    if shape == "sdk-process" and rules is not None:
        raise ValueError("rules for an `sdk-process` provider: use `sdk` or `sidecar`")
    names = tuple(services)
    if shape == "sdk":
        config: dict[str, Any] = {"app": app, "registry": registry, "rules": rules}
        if version:
            config["metadata"] = {"version": version}
        config = {k: v for k, v in config.items() if v is not None}
        async with (
            sofamesh.open_mesh(config, env={}) as mesh,
            serve(mesh, kind, load_target(target), list(names)),
        ):
            yield ProviderHandle(shape, names, mesh=mesh)
        return
    own_registry = registry if shape == "sdk-process" else "memory://"
    argv = _upstream_argv(processes, kind, target, names, app, own_registry, version)
    handle = ProviderHandle(shape, names)
    try:
        handle.processes.append(await processes.upstream(f"{app}-app", argv))
        if shape == "sidecar":
            config = _sidecar_config(registry, kind, names, app, handle.processes[0], version)
            config |= sidecar_config or {}
            handle.sidecar = await processes.sidecar(config, rules)
            handle.processes.append(handle.sidecar)
        yield handle
    finally:
        for p in reversed(handle.processes):  # the sidecar unpublishes before its app stops
            await p.aclose()


def _upstream_argv(
    processes: Processes,
    kind: str,
    target: str,
    services: tuple[str, ...],
    app: str,
    registry: str,
    version: str,
) -> list[str]:
    argv = [sys.executable, "-m", "sofamesh.testing", kind, target, "--app", app]
    argv += ["--registry", registry, "--backend", processes.backend]
    for s in services:
        argv += ["--service", s]
    return argv + (["--version", version] if version else [])


def _sidecar_config(
    registry: str, kind: str, services: tuple[str, ...], app: str, up: MeshProcess, version: str
) -> dict[str, Any]:
    inbound = {
        "protocol": _PROTOCOL[kind],
        "listen": "127.0.0.1:0",
        "upstream": f"127.0.0.1:{up.ready['port']}",
        "services": list(services),
    }
    config: dict[str, Any] = {"app": app, "registry": registry, "inbound": [inbound]}
    if version:
        config["metadata"] = {"version": version}
    return config
