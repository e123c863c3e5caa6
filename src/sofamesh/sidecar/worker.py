"""One worker process of a sidecar with `workers: N` (`python -m sofamesh.sidecar --worker FD`).

A worker is an ordinary `Sidecar` serving the listening sockets its main process
handed it, with three differences that keep one copy of the shared state in the
main process (sidecar/workers.py):

- its registry is `SupervisedRegistry`: watches are the main process's (one per
  service for the whole sidecar, whatever the number of workers), publications too;
- its rules and the local API's registrations are pushed by the main process;
- it has no admin API, control-plane session, registry APIs or transparent
  listeners: the main process holds them.

A worker whose main process goes away drains and exits: it never outlives it.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

import anyio
import anyio.abc

from sofamesh.config import Address, MeshConfig
from sofamesh.config.structure import structure
from sofamesh.endpoint import Endpoint
from sofamesh.registry.base import Shared, Snapshot, follow_shared, watching
from sofamesh.sidecar.admin import cluster_rows
from sofamesh.sidecar.admin_stats import listener_rows, upstream_rows
from sofamesh.sidecar.app import Sidecar
from sofamesh.sidecar.publishing import Registration
from sofamesh.sidecar.upgrade import HANDSHAKE_TIMEOUT, adopt
from sofamesh.sidecar.worker_link import Link, snapshot_of
from sofamesh.sidecar.worker_stats import family_state, stats_state
from sofamesh.transport.handover import Channel

log = logging.getLogger("sofamesh.sidecar.workers")


class SupervisedRegistry:
    """A worker's registry: snapshots from the main process's watches; it publishes nothing
    (the main process publishes the sidecar's endpoints, once)."""

    def __init__(self) -> None:
        self.link: Link | None = None
        self._watched: dict[str, Shared] = {}

    async def __aenter__(self) -> SupervisedRegistry:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def publish(self, endpoint: Endpoint) -> None:
        return None

    async def unpublish(self, endpoint: Endpoint) -> None:
        return None

    def watch(self, service: str) -> Any:
        shared = self._watched.get(service)
        if shared is None:
            shared = self._watched[service] = Shared()
            self._post({"watch": service})
        return self._following(service, shared)

    @asynccontextmanager
    async def _following(self, service: str, shared: Shared) -> AsyncIterator[Any]:
        async with watching(follow_shared(self._watched, service, shared)) as snaps:
            try:
                yield snaps
            finally:
                if service not in self._watched:  # its last watcher: the main one may stop
                    self._post({"unwatch": service})

    async def list_services(self) -> list[str]:
        assert self.link is not None
        reply = await self.link.ask("services")
        return [str(s) for s in reply.get("services", [])]

    def received(self, service: str, snap: Snapshot) -> None:
        shared = self._watched.get(service)
        if shared is not None:
            shared.publish(snap)

    def _post(self, message: dict[str, Any]) -> None:
        if self.link is not None:
            self.link.post(message)


class WorkerSidecar(Sidecar):
    """A worker's sidecar: the main process publishes this sidecar's endpoints, once."""

    async def _publish_static(self) -> None:
        return None


class Worker:
    """What a worker does with its main process's messages."""

    def __init__(self, sidecar: Sidecar, registry: SupervisedRegistry) -> None:
        self.sidecar = sidecar
        self.registry = registry

    async def handle(self, message: dict[str, Any]) -> dict[str, Any] | None:
        rt = self.sidecar.runtime
        if "snapshot" in message:
            self.registry.received(str(message["snapshot"]), snapshot_of(message))
        elif "registrations" in message:
            self.registrations(message["registrations"])
        elif "rules" in message:
            rt.governance.load(message["rules"], str(message["origin"]))
        elif "stop" in message:
            self.sidecar.stop()
        elif message.get("ask") == "stats":
            return self.stats()
        elif message.get("ask") == "reset":
            rt.stats.reset_counters()
            if rt.istio is not None:
                rt.istio.reset()
        elif message.get("ask") == "clusters":
            return {"clusters": cluster_rows(rt)}
        return None

    def stats(self) -> dict[str, Any]:
        """This worker's counters, rule decisions and connections, for the main one's sum."""
        rt = self.sidecar.runtime
        return {
            "stats": stats_state(rt.stats),
            "rules": rt.governance.snapshot()["rules"],
            "istio": family_state(list(rt.istio.families())) if rt.istio is not None else [],
            "listeners": listener_rows(self.sidecar.servers),
            "upstreams": upstream_rows(rt.protocols),
        }

    def registrations(self, items: list[dict[str, Any]]) -> None:
        # The main process expires them and pushes the whole set again.
        self.sidecar.registrations = {
            (str(r["service"]), str(r["protocol"])): Registration(
                str(r["service"]),
                str(r["protocol"]),
                Address.parse(r["upstream"]),
                str(r["app"]),
                math.inf,
            )
            for r in items
        }


async def serve_worker(fd: int, settle: Callable[[], None]) -> None:
    """Run one worker on the socket `fd` its main process passed it, until told to stop."""
    stream = await anyio.abc.UNIXSocketStream.from_socket(socket.socket(fileno=fd))
    channel = Channel(stream)
    with anyio.fail_after(HANDSHAKE_TIMEOUT):
        opening, _ = await channel.receive()  # the cap of what follows (rules documents)
        channel.max_message = int(opening["max_message"])
        hello, sockets = await channel.receive()
        rules, _ = await channel.receive()
    _prefix_logs(f"worker {hello['index']}: ")
    config: MeshConfig = structure(MeshConfig, hello["config"])
    registry = SupervisedRegistry()
    sidecar = WorkerSidecar(config, registry=registry)
    sidecar.sockets = adopt(list(hello["listeners"]), sockets)
    worker = Worker(sidecar, registry)
    if rules["rules"] is not None:  # in force before the first request
        sidecar.runtime.governance.load(rules["rules"], str(rules["origin"]))
    worker.registrations(hello.get("registrations", []))
    link = Link(channel, worker.handle, f"worker {hello['index']}")
    registry.link = link
    async with anyio.create_task_group() as tg:
        tg.start_soon(_link_then_stop, link, sidecar)
        await tg.start(sidecar.run)
        await tg.start(_stop_on_signal, sidecar)
        settle()
        link.post({"ready": os.getpid()})
        await sidecar.wait_stopped()
        tg.cancel_scope.cancel()


class _Prefix(logging.Filter):
    """Says which worker wrote a log line (they share the main process's stderr)."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = f"{self.prefix}{record.msg}"
        return True


def _prefix_logs(prefix: str) -> None:
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Prefix(prefix))


async def _link_then_stop(link: Link, sidecar: Sidecar) -> None:
    await link.run()
    if not sidecar.draining:
        log.warning("%s: draining", link.stalled or "the main process is gone")
        sidecar.stop()


async def _stop_on_signal(
    sidecar: Sidecar, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    # SIGHUP reopens access logs; SIGINT reaches the whole process group from a terminal,
    # and the main process stops the workers itself.
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        task_status.started()
        async for signum in signals:
            if signum == signal.SIGHUP:
                sidecar.reopen_logs()
            elif signum == signal.SIGTERM:
                sidecar.stop()
