"""Pick the endpoint for this attempt and record how it went (feeds outlier ejection)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

import anyio

from sofamesh.chain import Handler
from sofamesh.clock import Clock
from sofamesh.endpoint import Endpoint
from sofamesh.model import Invocation, Result, Status
from sofamesh.upstream.cluster import ClusterManager

if TYPE_CHECKING:
    from sofamesh.upstream.cluster_state import Cluster

# How long a first call waits for a brand-new cluster's first registry answer.
FIRST_SNAPSHOT_WAIT = 2.0
# A try cancelled this close to its deadline ended by it: the backend's timer and our clock
# may differ by a little (trio keeps its own clock).
DEADLINE_SLACK = 0.005
# Read on every call: `Status.OK` is `EnumType.__getattr__`'s slow path on Python 3.11.
_OK = Status.OK


class ResolveFilter:
    """Name the service as registered, before any rule or counter looks at the name."""

    def __init__(self, clusters: ClusterManager) -> None:
        self._clusters = clusters

    def invoke(self, inv: Invocation, call_next: Handler) -> Awaitable[Result]:
        return self.bind(call_next)(inv)

    def bind(self, call_next: Handler) -> Handler:
        clusters = self._clusters.clusters  # the manager's one dict, never replaced
        resolve = self._resolve

        def resolve_step(inv: Invocation) -> Awaitable[Result]:
            known = clusters.get(inv.service)
            if known is None or not known.endpoints:
                return resolve(inv, call_next)
            return call_next(inv)  # a known, populated service needs no look-up (nor a frame)

        return resolve_step

    async def _resolve(self, inv: Invocation, call_next: Handler) -> Result:
        inv.service = await self._clusters.canonical_name(inv.service)
        inv.now = None  # a reading taken above is from before the look-up
        return await call_next(inv)


class BalanceFilter:
    def __init__(self, clusters: ClusterManager, clock: Clock) -> None:
        self._clusters = clusters
        self._clock = clock

    def invoke(self, inv: Invocation, call_next: Handler) -> Awaitable[Result]:
        return self.bind(call_next)(inv)

    def bind(self, call_next: Handler) -> Handler:
        manager, clusters, now_of = self._clusters, self._clusters.clusters, self._clock.now
        wait_ready, pick_failed, cancelled = self._wait_ready, _no_endpoint, self._cancelled

        async def balance(inv: Invocation) -> Result:
            # ClusterManager.for_call's hit path, inline: a Python call less on every call.
            cluster = clusters.get(inv.service)
            if cluster is None:
                cluster = manager.for_call(inv.service)
            else:
                cluster.used = True
            now = inv.now  # the call's reading (`sofamesh.chain`), else the clock's
            if not cluster.is_ready:
                await wait_ready(cluster.ready, inv)
                now = inv.now = None  # taken before the wait (for what follows too)
            if now is None:
                now = now_of()
            if inv.deadline is not None and now >= inv.deadline:
                return Result.failure(
                    Status.TIMEOUT, f"{inv.service}: deadline passed before the call"
                )
            route = inv.route  # governance routing: subsets, hashing, zones (governance/filters)
            ep = (
                cluster.pick(inv.tried, now, inv)
                if route is None
                else route.pick(cluster, inv, now)
            )
            if ep is None:
                return pick_failed(cluster, inv)
            inv.endpoint = ep
            key = ep.key
            inv.tried.add(key)
            cluster.active[key] = cluster.active.get(key, 0) + 1
            try:
                result = await call_next(inv)
            except anyio.get_cancelled_exc_class():
                cancelled(cluster, ep, inv, now)
                raise
            finally:
                cluster.active[key] -= 1
            result.endpoint = ep
            end = now_of()
            status = result.status
            if status is _OK:  # the common outcome, recorded without the failure's tests
                cluster.settled(ep, (end - now) * 1000, end)
            else:
                cluster.record(ep, status.is_failure, status, (end - now) * 1000, end)
            return result

        return balance

    def _cancelled(self, cluster: Cluster, ep: Endpoint, inv: Invocation, start: float) -> None:
        """A try cut short at its deadline (a per-try timeout above cancels the try): the
        endpoint did not answer in time, a failure as any timeout is (Envoy's local-origin
        timeout). A caller who went away earlier says nothing of it."""
        ended = self._clock.now()
        if inv.deadline is not None and ended >= inv.deadline - DEADLINE_SLACK:
            cluster.record(ep, True, Status.TIMEOUT, (ended - start) * 1000)

    async def _wait_ready(self, ready: anyio.Event, inv: Invocation) -> None:
        """Wait for the first registry answer, at most `FIRST_SNAPSHOT_WAIT` or to the deadline."""
        wait = FIRST_SNAPSHOT_WAIT
        if inv.deadline is not None:
            wait = min(wait, inv.deadline - self._clock.now())
        with anyio.move_on_after(max(wait, 0.0)):
            await ready.wait()


def _no_endpoint(cluster: Cluster, inv: Invocation) -> Result:
    why = "no endpoints registered" if not cluster.endpoints else "all endpoints unhealthy"
    return Result.failure(
        Status.NO_ENDPOINT, f"no healthy endpoint for service {inv.service}: {why}"
    )
