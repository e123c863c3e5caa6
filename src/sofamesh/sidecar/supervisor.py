"""The main process of a sidecar with `workers: N` (N > 1): Envoy's main thread, as a process.

It loads and validates the config, binds every listener once (so `:0` ports resolve
once, and the READY line and `/listeners` say where the sidecar listens), and holds
what there must be one of: the admin API, the registry (its watches and this app's
publications), the local API's registrations, the control-plane session, the rules
and the registry APIs. N workers (sidecar/worker.py, started and restarted by
sidecar/workers.py) serve the inbound and outbound listeners; transparent-mode
listeners and the DNS proxy stay here.

The admin API answers for all: `/stats` and `/stats/prometheus` are the sum of the
workers' counters (and a `workers` list in `/stats`: each one's pid, restarts and
calls), `/clusters` merges their views, `/reset_counters` resets them all.

Lifecycle: bind -> start the workers (each serving) -> publish -> ready. Draining:
not ready -> unpublish -> each worker drains -> exit. An in-place upgrade hands the
listening sockets over as for one process; this process's workers then drain.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

import anyio
import anyio.abc
import attrs

from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.config import Address, ListenerConfig, MeshConfig
from sofamesh.config.model import RegistryApisConfig
from sofamesh.endpoint import Endpoint
from sofamesh.protocols import Server
from sofamesh.sidecar.admin import AdminApi, config_to_data, json_response
from sofamesh.sidecar.app import Sidecar
from sofamesh.sidecar.listener_shares import bind_reusable, spread
from sofamesh.sidecar.log_levels import LOG_LEVELS
from sofamesh.sidecar.upgrade import Takeover
from sofamesh.sidecar.worker_link import ENVELOPE
from sofamesh.sidecar.worker_stats import (
    merged,
    merged_families,
    requests_served,
    stats_state,
    summed,
    summed_rows,
)
from sofamesh.sidecar.workers import WorkerPool
from sofamesh.stats import Family, Match, Stats
from sofamesh.transport.handover import MessageError, frame


def worker_argv(backend: str, uvloop: bool, log_level: int, log_format: str) -> list[str]:
    """How a worker is started (its socket's descriptor is appended)."""
    argv = [sys.executable, "-m", "sofamesh.sidecar", "--backend", backend]
    level = next((name for name, n in LOG_LEVELS.items() if n == log_level), "info")
    argv += ["--log-level", level, "--log-format", log_format]
    return [*argv, *([] if uvloop else ["--no-uvloop"]), "--worker"]


def worker_config(config: MeshConfig) -> MeshConfig:
    """What a worker runs: the listeners, without what the main process holds for all."""
    return attrs.evolve(
        config, admin=None, control=None, control_token=None, rules=None, rules_file=None,
        rules_key=None, intercept=None, registry_apis=RegistryApisConfig(), workers=1,
    )  # fmt: skip


class Supervisor(Sidecar):
    def __init__(
        self,
        config: MeshConfig,
        argv: list[str],
        *,
        upgrades: bool = False,
        takeover: Takeover | None = None,
    ) -> None:
        super().__init__(config, upgrades=upgrades, takeover=takeover)
        self.pool = WorkerPool(self, config.workers, argv)
        self._held: dict[str, Any] = {}  # the listeners the workers accept on, kept open here
        self._shares: dict[str, list[list[socket.socket]]] = {}  # by listener, each worker's
        # The rules in force, as the message a worker starts with (none yet: `null`).
        self.rules_frame = frame({"rules": None}, self.pool.cap)
        self._forward_rules()

    def _forward_rules(self) -> None:
        # Every source of rules (inline, file, registry key, control plane, last good) ends
        # in `Governance.load`: each document it accepts goes to the workers too. One that
        # cannot reach them is refused here as well (fail closed): the main process and
        # every worker keep the same rules.
        governance = self.runtime.governance
        load = governance.load

        def load_and_forward(data: Any, origin: str) -> bool:
            try:
                message = frame({"rules": data, "origin": origin}, self.pool.cap)
            except MessageError as exc:
                largest = self.pool.cap - ENVELOPE
                governance.reject(origin, [
                    f"cannot go to the workers: {exc} (with workers, a rules document is at "
                    f"most {largest} bytes as compact JSON)"])  # fmt: skip
                return False
            ok = load(data, origin)
            if ok:
                self.rules_frame = message
                self.pool.broadcast_frame(message)
            return ok

        governance.load = load_and_forward  # type: ignore[method-assign]

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[Sidecar] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        async with anyio.create_task_group() as tg:
            self.pool.tg = tg
            await super().run(task_status=task_status)
            tg.cancel_scope.cancel()

    async def _listen(
        self,
        tg: anyio.abc.TaskGroup,
        name: str,
        lc: ListenerConfig,
        server: Server,
        alpn: tuple[str, ...] | None = None,
    ) -> None:
        """Bind (or take over) the listener and each worker's socket; accept nothing here."""
        listener = await self.sockets.open(name, lc.listen, bind_reusable)
        self._held[name] = listener
        addresses, sockets = self.sockets.serving[name]
        self._shares[name] = shares = spread(name, list(sockets), self.config.workers)
        every = list({id(sock): sock for share in shares for sock in share}.values())
        self.sockets.serving[name] = (addresses, every)  # an upgrade hands on all of them
        self.bound[name] = Address(
            lc.listen.host, listener.extra(anyio.abc.SocketAttribute.local_port)
        )

    async def _publish_static(self) -> None:
        await self.pool.start()  # published once the workers serve
        await super()._publish_static()

    async def _drain(self) -> None:
        await super()._drain()  # not ready, unpublished
        await self.pool.stop()

    def hello(self, index: int) -> dict[str, Any]:
        """What a worker starts with: its config, the listeners and the registrations (the
        rules follow, in `rules_frame`)."""
        listeners = [
            {"name": name, "addresses": self.sockets.serving[name][0], "count": len(shares[index])}
            for name, shares in self._shares.items()
        ]
        return {
            "config": config_to_data(worker_config(self.config)),
            "index": index,
            "listeners": listeners,
            "registrations": self.registration_rows(),
        }

    def listener_fds(self, index: int) -> list[int]:
        """Worker `index`'s sockets, in the order `hello` lists them."""
        return [sock.fileno() for shares in self._shares.values() for sock in shares[index]]

    def registration_rows(self) -> list[dict[str, str]]:
        return [
            {
                "service": r.service,
                "protocol": r.protocol,
                "upstream": str(r.upstream),
                "app": r.app,
            }
            for r in self.registrations.values()
        ]

    async def register(
        self, service: str, protocol: str, upstream: Address, app: str, lease: float,
        labels: Any = None,
    ) -> Endpoint:  # fmt: skip
        ep = await super().register(service, protocol, upstream, app, lease, labels)
        self.pool.broadcast({"registrations": self.registration_rows()})
        return ep

    async def deregister(self, service: str, protocol: str) -> bool:
        found = await super().deregister(service, protocol)
        self.pool.broadcast({"registrations": self.registration_rows()})
        return found

    def admin_api(self) -> AdminApi:
        return WorkersAdmin(self)


class WorkersAdmin(AdminApi):
    """The admin API of a main process: the workers' counters summed, their views merged."""

    sidecar: Supervisor

    def __init__(self, sidecar: Supervisor) -> None:
        super().__init__(sidecar)
        self._rows: list[dict[str, Any]] = []
        self._answers: list[dict[str, Any]] = []  # the workers' to the last stats ask

    async def collected_stats(self) -> Stats:
        answers = await self.sidecar.pool.ask_all("stats")
        self._answers = [a for _w, a in answers]
        self._rows = [
            {"worker": w.index, "pid": w.pid, "restarts": self.sidecar.pool.restarts[w.index],
             "rq_total": requests_served(a["stats"])}
            for w, a in answers
        ]  # fmt: skip
        own = stats_state(self.sidecar.runtime.stats)  # the defences' counts, TLS, refusals
        return merged([own, *(a["stats"] for _w, a in answers)])

    def connection_rows(
        self, match: Match | None = None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        own_listeners, own_upstreams = super().connection_rows()  # transparent mode's
        listeners = summed_rows(
            [*(a["listeners"] for a in self._answers), own_listeners], ("name",)
        )
        upstreams = summed_rows(
            [*(a["upstreams"] for a in self._answers), own_upstreams], ("protocol", "address")
        )
        upstreams.sort(key=lambda r: (r["protocol"], r["address"]))
        if match is not None:
            listeners = [r for r in listeners if match(f"listener.{r['name']}")]
            upstreams = [r for r in upstreams if match(f"upstream.{r['address']}")]
        return listeners, upstreams

    def governance_snapshot(self) -> dict[str, Any]:
        governance = self.sidecar.runtime.governance  # the rules in force: the main's
        rules = [a["rules"] for a in self._answers]
        return {**governance.status(), "rules": summed(rules) if rules else {}}

    def istio_families(self) -> list[Family]:
        if self.sidecar.runtime.istio is None:
            return []
        return merged_families([a["istio"] for a in self._answers])

    async def workers_view(self) -> dict[str, Any]:
        return {"workers": self._rows, "worker_watches": self.sidecar.pool.watched()}

    async def reset_counters(self, req: HttpRequest) -> HttpResponse:
        await self.sidecar.pool.ask_all("reset")
        return await super().reset_counters(req)

    async def clusters(self, _req: HttpRequest) -> HttpResponse:
        answers = await self.sidecar.pool.ask_all("clusters")
        return json_response(
            200, {"clusters": merge_clusters([a["clusters"] for _w, a in answers])}
        )


def merge_clusters(views: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per service: the first worker's view, with every worker's active requests
    summed per endpoint and each worker's health of it (`health_by_worker`)."""
    rows: dict[str, dict[str, Any]] = {}
    for view in views:
        for cluster in view:
            row = rows.setdefault(cluster["service"], {**cluster, "endpoints": []})
            endpoints = {e["address"]: e for e in row["endpoints"]}
            for ep in cluster["endpoints"]:
                mine = endpoints.get(ep["address"])
                if mine is None:
                    mine = {**ep, "active_requests": 0, "health_by_worker": []}
                    row["endpoints"].append(mine)
                    endpoints[ep["address"]] = mine
                mine["active_requests"] += ep["active_requests"]
                mine["health_by_worker"].append(ep["health"])
    return [rows[s] for s in sorted(rows)]
