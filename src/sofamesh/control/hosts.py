"""The agent's view of the process it runs in: a sidecar or an SDK app.

Each adapter reads only what its front door already exposes, so the front doors
need no more than the few lines that start the agent (`run_agent`).
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from sofamesh.config import ConfigError
from sofamesh.control.agent import ControlAgent
from sofamesh.control.enroll import Enroller
from sofamesh.governance.holder import Governance
from sofamesh.security.enroll import renew_time
from sofamesh.stats import Stats

if TYPE_CHECKING:
    from sofamesh.config import MeshConfig
    from sofamesh.runtime import Runtime
    from sofamesh.sdk.mesh import Mesh
    from sofamesh.sidecar.app import Sidecar
    from sofamesh.upstream.cluster import ClusterManager

log = logging.getLogger("sofamesh.control.agent")


def traffic(stats: Stats) -> list[dict[str, Any]]:
    """Cumulative counters per (direction, service), as reports carry them.

    Inbound rows are kept per caller in `stats`; they are added up here (latency: the
    largest of the callers' quantiles).
    """
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for (direction, service, _caller), cs in sorted(stats.services.items()):
        row = rows.setdefault(
            (direction, service),
            {"direction": direction, "service": service, "requests": 0, "errors": 0,
             "p50": 0.0, "p99": 0.0},
        )  # fmt: skip
        row["requests"] += cs.total
        row["errors"] += cs.errors
        row["p50"] = max(row["p50"], cs.latency.quantile(0.5))
        row["p99"] = max(row["p99"], cs.latency.quantile(0.99))
    return list(rows.values())


MAX_REPORTED_CLUSTERS = 100  # a report stays small however many services a data plane calls


def clusters(manager: ClusterManager | None) -> list[dict[str, Any]]:
    """Each called service's endpoints and their state (healthy, unhealthy, ejected)."""
    if manager is None:
        return []
    found = sorted(manager.clusters.values(), key=lambda c: c.service)[:MAX_REPORTED_CLUSTERS]
    keep = ("address", "health", "times_ejected", "ejected_for_s", "active_requests")
    return [
        {
            "service": d["service"],
            "balancer": d["balancer"],
            "endpoints": [{k: e[k] for k in keep} for e in d["endpoints"]],
        }
        for d in (c.describe() for c in found)
    ]


def _calls(stats: Stats) -> list[str]:
    return sorted({s for d, s, _c in stats.services if d == "outbound"})


def tls_state(runtime: Runtime) -> dict[str, Any]:
    """What a report says of mTLS: the mode, and the identity in force with its expiry."""
    cfg = runtime.config.tls
    if runtime.tls is None:
        return {"mode": cfg.mode}
    identity = runtime.tls.contexts.source.loaded
    return {
        "mode": cfg.mode,
        "issuer": "files" if cfg.cert else "control",
        "spiffe_id": str(identity.spiffe_id) if identity else None,
        "not_after": identity.not_after.timestamp() if identity else None,
        "renew_after": renew_time(identity.cert).timestamp() if identity else None,
    }


class SidecarHost:
    mode = "sidecar"

    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar
        self.app = sidecar.config.app
        self.runtime = sidecar.runtime
        self.governance: Governance = sidecar.runtime.governance

    @property
    def ready(self) -> bool:
        return self.sidecar.ready or self.sidecar.draining

    def describe(self) -> dict[str, Any]:
        s = self.sidecar
        provides = {svc for lc in s.config.inbound for svc in lc.services}
        provides |= {r.service for r in s.registrations.values()}
        health = "draining" if s.draining else ("serving" if s.healthy else "failed")
        return {
            "listeners": [{"name": k, "address": str(v)} for k, v in s.bound.items()],
            "provides": sorted(provides),
            "calls": _calls(s.runtime.stats),
            "health": health,
            "started_at": s.started_at,
            "tls": tls_state(s.runtime),
            "clusters": clusters(s.runtime.clusters),
        }

    def traffic(self) -> list[dict[str, Any]]:
        return traffic(self.sidecar.runtime.stats)

    async def set_healthy(self, healthy: bool) -> None:
        await self.sidecar.set_healthy(healthy)

    def drain(self) -> None:
        self.sidecar.stop()


class MeshHost:
    mode = "sdk"

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self.app = mesh.config.app
        self.runtime = mesh.runtime
        self.governance: Governance = mesh.governance
        self.healthy = True
        self.started_at = time.time()
        self.ready = True

    def describe(self) -> dict[str, Any]:
        stats = self.mesh.runtime.stats
        provides = set(getattr(self.mesh, "provided", ())) | {
            s for d, s, _c in stats.services if d == "inbound"
        }
        return {
            "listeners": [],
            "provides": sorted(provides),
            "calls": _calls(stats),
            "health": "serving" if self.healthy else "failed",
            "started_at": self.started_at,
            "tls": tls_state(self.mesh.runtime),
            "clusters": clusters(self.mesh.runtime.clusters),
        }

    def traffic(self) -> list[dict[str, Any]]:
        return traffic(self.mesh.runtime.stats)

    async def set_healthy(self, healthy: bool) -> None:
        # An SDK app owns its providers' lifetime: the mark is reported, not enforced.
        self.healthy = healthy

    def drain(self) -> None:
        log.warning("drain asked of an SDK app: only its own code can stop its providers")


def agent_for(config: MeshConfig, host: Any, env: dict[str, str] | None = None) -> ControlAgent:
    """The agent a mesh config's `control:`, `control_token` and `workspace` describe."""
    env = dict(os.environ if env is None else env)
    token = config.control_token or env.get("SOFAMESH_CONTROL_TOKEN")
    if not token:
        raise ConfigError(["control_token: required with control (or SOFAMESH_CONTROL_TOKEN)"])
    assert config.control is not None and config.workspace is not None
    agent = ControlAgent(host, config.control, token, config.workspace, env=env)
    agent.ca_file = config.control_ca
    tls = host.runtime.tls
    if tls is not None and config.tls.cert is None:  # the control plane issues the identity
        source = tls.contexts.source
        agent.enroller = Enroller(agent.call, config.workspace, config.app, source)
    return agent


async def run_agent(
    config: MeshConfig,
    host: Any,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run the agent for `host` (a `SidecarHost` or `MeshHost`); started once rules are restored."""
    await agent_for(config, host).run(task_status=task_status)
