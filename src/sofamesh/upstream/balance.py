"""Pick the endpoint for this attempt and record how it went (feeds outlier ejection)."""

from __future__ import annotations

from collections.abc import Awaitable

import anyio

from sofamesh.chain import Handler
from sofamesh.clock import Clock
from sofamesh.model import Invocation, Result, Status
from sofamesh.upstream.cluster import ClusterManager

# How long a first call waits for a brand-new cluster's first registry answer.
FIRST_SNAPSHOT_WAIT = 2.0
# A try cancelled this close to its deadline ended by it: the backend's timer and our clock
# may differ by a little (trio keeps its own clock).
DEADLINE_SLACK = 0.005


class ResolveFilter:
    """Name the service as registered, before any rule or counter looks at the name."""

    def __init__(self, clusters: ClusterManager) -> None:
        self._clusters = clusters

    def invoke(self, inv: Invocation, call_next: Handler) -> Awaitable[Result]:
        known = self._clusters.clusters.get(inv.service)
        if known is None or not known.endpoints:
            return self._resolve(inv, call_next)
        return call_next(inv)  # a known, populated service needs no look-up (nor a frame)

    async def _resolve(self, inv: Invocation, call_next: Handler) -> Result:
        inv.service = await self._clusters.canonical_name(inv.service)
        return await call_next(inv)


class BalanceFilter:
    def __init__(self, clusters: ClusterManager, clock: Clock) -> None:
        self._clusters = clusters
        self._clock = clock

    async def invoke(self, inv: Invocation, call_next: Handler) -> Result:
        # ClusterManager.for_call's hit path, inline: a Python call less on every call.
        cluster = self._clusters.clusters.get(inv.service)
        if cluster is None:
            cluster = self._clusters.for_call(inv.service)
        else:
            cluster.used = True
        if not cluster.is_ready:
            await self._wait_ready(cluster.ready, inv)
        now = self._clock.now()
        if inv.deadline is not None and now >= inv.deadline:
            return Result.failure(Status.TIMEOUT, f"{inv.service}: deadline passed before the call")
        route = inv.route  # governance routing: subsets, hashing, zones (governance/filters)
        ep = cluster.pick(inv.tried, now, inv) if route is None else route.pick(cluster, inv, now)
        if ep is None:
            why = "no endpoints registered" if not cluster.endpoints else "all endpoints unhealthy"
            return Result.failure(
                Status.NO_ENDPOINT, f"no healthy endpoint for service {inv.service}: {why}"
            )
        inv.endpoint = ep
        inv.tried.add(ep)
        key = ep.key
        cluster.active[key] = cluster.active.get(key, 0) + 1
        try:
            result = await call_next(inv)
        except anyio.get_cancelled_exc_class():
            # Cut short at the try's deadline (a per-try timeout above cancels the try): the
            # endpoint did not answer in time, a failure as any timeout is (Envoy's
            # local-origin timeout). A caller who went away earlier says nothing of it.
            ended = self._clock.now()
            if inv.deadline is not None and ended >= inv.deadline - DEADLINE_SLACK:
                cluster.record(ep, True, Status.TIMEOUT, (ended - now) * 1000)
            raise
        finally:
            cluster.active[key] -= 1
        result.endpoint = ep
        end = self._clock.now()
        status = result.status
        cluster.record(
            ep, status is not Status.OK and status.is_failure, status, (end - now) * 1000, end
        )
        return result

    async def _wait_ready(self, ready: anyio.Event, inv: Invocation) -> None:
        """Wait for the first registry answer, at most `FIRST_SNAPSHOT_WAIT` or to the deadline."""
        wait = FIRST_SNAPSHOT_WAIT
        if inv.deadline is not None:
            wait = min(wait, inv.deadline - self._clock.now())
        with anyio.move_on_after(max(wait, 0.0)):
            await ready.wait()
