"""A frozen endpoint (a SIGSTOPped provider: connections accepted, nothing answered).

Its tries end by the per-try timeout, which cancels them above `BalanceFilter`: each such
timeout counts toward the endpoint's ejection like any failure (Envoy's local-origin
timeout), while a call the caller gives up on (a plain cancel) does not.
"""

from __future__ import annotations

import anyio
import pytest

from sofamesh.chain import build_chain
from sofamesh.clock import Clock, FakeClock, MonotonicClock
from sofamesh.config import PolicyConfig
from sofamesh.endpoint import Endpoint
from sofamesh.model import Invocation, Result, Status
from sofamesh.registry import MemoryHub, MemoryRegistry
from sofamesh.stats import Stats
from sofamesh.upstream.balance import BalanceFilter
from sofamesh.upstream.cluster import ClusterManager
from sofamesh.upstream.outlier import OutlierConfig
from sofamesh.upstream.retry import Release, RetryFilter

pytestmark = pytest.mark.anyio

EPS = [Endpoint("svc", "127.0.0.1", p) for p in (1, 2)]
FROZEN = 1


class RetryTimeouts:
    """A route's retry plan: three tries, timeouts retried, 50 ms per try."""

    attempts = 3
    per_try_timeout = 0.05
    in_flight = None
    ok_is_final = True

    def retryable(self, inv: Invocation, result: Result, gateway_codes: frozenset[int]) -> bool:
        return result.status is Status.TIMEOUT

    def backoff(self, retry: int) -> float:
        return 0.0

    def admit(self, service: str) -> Release | None:
        return lambda: None

    def retried(self) -> None: ...

    def try_timed_out(self) -> None: ...


async def cluster_manager(clock: Clock) -> ClusterManager:
    reg = MemoryRegistry(MemoryHub())
    for ep in EPS:
        await reg.publish(ep)
    pol = PolicyConfig(outlier=OutlierConfig(consecutive_failures=2))
    return ClusterManager(reg, lambda s: pol, Stats(), clock, protocols={"http"})


async def test_per_try_timeouts_eject_a_frozen_endpoint_and_calls_keep_succeeding() -> None:
    hung = 0

    async def frozen_one(inv: Invocation) -> Result:
        nonlocal hung
        assert inv.endpoint is not None
        if inv.endpoint.port == FROZEN:
            hung += 1
            await anyio.sleep_forever()
        return Result(Status.OK)

    clock = MonotonicClock()  # the per-try timeout runs on real time
    cm = await cluster_manager(clock)
    retry = RetryFilter(lambda s: PolicyConfig(), Stats(), clock, plans=lambda inv: RetryTimeouts())
    chain = build_chain([retry, BalanceFilter(cm, clock)], frozen_one)
    async with cm:
        with anyio.fail_after(5):
            results = [await chain(Invocation("http", "svc", "/")) for _ in range(10)]
        health = {e["port"]: e["health"] for e in cm.clusters["svc"].describe()["endpoints"]}
    assert all(r.ok for r in results)  # each timed-out try retried on the live endpoint
    assert hung == 2  # two timeouts in a row ejected it: no call waits on it after that
    assert health[FROZEN] == "ejected"


async def test_a_caller_giving_up_does_not_count_against_the_endpoint() -> None:
    entered = anyio.Event()

    async def slow(inv: Invocation) -> Result:
        entered.set()
        await anyio.sleep_forever()
        raise AssertionError

    clock = FakeClock()
    cm = await cluster_manager(clock)
    chain = build_chain([BalanceFilter(cm, clock)], slow)
    async with cm:
        for _ in range(3):
            entered = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(chain, Invocation("http", "svc", "/"))
                await entered.wait()
                tg.cancel_scope.cancel()
        endpoints = cm.clusters["svc"].describe()["endpoints"]
    assert [e["health"] for e in endpoints] == ["healthy", "healthy"]
