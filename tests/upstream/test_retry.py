"""The one retry filter: connect retries without a plan; a plan's policy, admission and back-off."""

from __future__ import annotations

import anyio
import pytest

from sofamesh.chain import Handler, build_chain
from sofamesh.clock import FakeClock
from sofamesh.config.model import MeshConfig, PolicyConfig
from sofamesh.model import Invocation, Result, Status
from sofamesh.runtime import Composes, Runtime
from sofamesh.stats import Stats
from sofamesh.upstream.retry import Release, RetryFilter

pytestmark = pytest.mark.anyio

CODES = {"http": frozenset({503}), "grpc": frozenset({14})}


class Count:
    """A retry budget's requests in flight, as the filter counts a call in them."""

    def __init__(self) -> None:
        self.requests = 0


class Plan:
    """A `RetryPlan` as governance would give one, recording what the filter asked of it."""

    def __init__(self, attempts: int = 3, admit: int = 10, per_try: float | None = None) -> None:
        self.attempts = attempts
        self.per_try_timeout = per_try
        self.in_flight = Count()
        self.ok_is_final = False
        self._places = admit
        self.log: list[str] = []
        self.codes: list[frozenset[int]] = []

    def retryable(self, inv: Invocation, result: Result, gateway_codes: frozenset[int]) -> bool:
        self.codes.append(gateway_codes)
        return result.code in gateway_codes

    def backoff(self, retry: int) -> float:
        return 0.5 * retry

    def admit(self, service: str) -> Release | None:
        if self._places == 0:
            self.log.append("refused")
            return None
        self._places -= 1
        return lambda: self.log.append("released")

    def retried(self) -> None:
        self.log.append("retried")

    def try_timed_out(self) -> None:
        self.log.append("try timed out")


def answering(*codes: int) -> tuple[Handler, list[int]]:
    seen: list[int] = []

    async def terminal(inv: Invocation) -> Result:
        seen.append(inv.attempt)
        code = codes[min(len(seen) - 1, len(codes) - 1)]
        return Result(Status.OK if code == 200 else Status.APP_ERROR, code=code)

    return terminal, seen


def retrying(plan: Plan | None, terminal: Handler, clock: FakeClock) -> Handler:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.advance(seconds)

    flt = RetryFilter(
        lambda s: PolicyConfig(connect_retries=1),
        Stats(),
        clock,
        gateway_codes=CODES.__getitem__,
        plans=lambda inv: plan,
        sleep=sleep,
    )
    return build_chain([flt], terminal)


async def test_a_plan_retries_the_protocols_gateway_codes_with_back_off() -> None:
    clock = FakeClock()
    start = clock.now()
    plan = Plan(attempts=3)
    terminal, seen = answering(503, 503, 200)
    counted: list[int] = []

    async def counting(inv: Invocation) -> Result:
        counted.append(plan.in_flight.requests)
        return await terminal(inv)

    result = await retrying(plan, counting, clock)(Invocation("http", "svc", "/"))
    assert result.ok and seen == [0, 1, 2]
    assert plan.codes == [frozenset({503})] * 2  # the runtime's codes for the call's protocol
    assert clock.now() - start == pytest.approx(0.5 + 1.0)  # backoff(1) then backoff(2)
    assert plan.log == ["retried", "released", "retried", "released"]
    assert counted == [1, 1, 1] and plan.in_flight.requests == 0  # one call, in flight throughout


async def test_a_refused_retry_ends_the_call_with_the_last_result() -> None:
    plan = Plan(attempts=5, admit=1)
    terminal, seen = answering(503)
    result = await retrying(plan, terminal, FakeClock())(Invocation("http", "svc", "/"))
    assert result.code == 503 and seen == [0, 1]
    assert plan.log == ["retried", "released", "refused"]
    assert plan.in_flight.requests == 0


async def test_no_retry_starts_that_could_not_begin_before_the_deadline() -> None:
    clock = FakeClock()
    terminal, seen = answering(503)
    inv = Invocation("http", "svc", "/", deadline=clock.now() + 0.4)  # backoff(1) is 0.5
    assert (await retrying(Plan(), terminal, clock)(inv)).code == 503
    assert seen == [0]


async def test_per_try_timeout_ends_a_slow_try_and_the_next_one_runs() -> None:
    tries = 0

    async def slow_then_fast(inv: Invocation) -> Result:
        nonlocal tries
        tries += 1
        if tries == 1:
            await anyio.sleep_forever()
        return Result(Status.OK)

    plan = Plan(per_try=0.01)
    plan.retryable = lambda inv, result, codes: result.status is Status.TIMEOUT  # type: ignore[method-assign]
    result = await retrying(plan, slow_then_fast, FakeClock())(Invocation("http", "svc", "/"))
    assert result.ok and tries == 2 and "try timed out" in plan.log


async def test_without_a_plan_only_connect_failures_are_retried() -> None:
    attempts: list[int] = []

    async def refused(inv: Invocation) -> Result:
        attempts.append(inv.attempt)
        return Result(Status.CONNECT_FAILED)

    await retrying(None, refused, FakeClock())(Invocation("http", "svc", "/"))
    assert attempts == [0, 1]  # policy.connect_retries = 1
    terminal, seen = answering(503)
    await retrying(None, terminal, FakeClock())(Invocation("http", "svc", "/"))
    assert seen == [0]


def test_runtime_gives_each_protocol_its_gateway_codes() -> None:
    rt = Runtime(MeshConfig(app="a"))
    assert rt.gateway_codes("http") == frozenset({502, 503, 504})
    assert rt.gateway_codes("h2") == frozenset({502, 503, 504})
    assert rt.gateway_codes("grpc") == frozenset({14})
    assert rt.gateway_codes("bolt") == frozenset({4})
    assert rt.gateway_codes("dubbo") == frozenset({60, 100})
    assert rt.gateway_codes("thrift") == frozenset()


def test_runtime_composition_follows_the_mode_unless_told() -> None:
    assert Runtime(MeshConfig(app="a")).composes is Composes.DIRECT
    sdk_in_sidecar_mode = MeshConfig(app="a", mode="sidecar")
    assert Runtime(sdk_in_sidecar_mode).composes is Composes.VIA_SIDECAR
    assert Runtime(sdk_in_sidecar_mode, composes=Composes.DIRECT).composes is Composes.DIRECT
    assert Composes.VIA_SIDECAR.value == "via the local sidecar"


class PlansKept(dict[object, "Plan | None"]):
    """`plans_by_route` as governance's `RoutePlans` is: plans by route, made once each."""

    def __init__(self, plans: dict[str, Plan | None]) -> None:
        super().__init__()
        self._plans = plans
        self.made: list[object] = []

    def plan(self, inv: Invocation) -> Plan | None:
        self.made.append(inv.route)
        self[inv.route] = plan = self._plans[str(inv.route)]
        return plan


async def test_plans_by_route_are_made_once_per_route_and_read_after() -> None:
    by_route = PlansKept({"canary": Plan(attempts=2), "plain": None})
    flt = RetryFilter(
        lambda s: PolicyConfig(), Stats(), FakeClock(), gateway_codes=CODES.__getitem__,
        plans_by_route=by_route,
    )  # fmt: skip
    terminal, seen = answering(503, 200)
    chain = build_chain([flt], terminal)
    for route in ("canary", "canary", "plain", "plain"):
        await chain(Invocation("http", "svc", "/", route=route))  # type: ignore[arg-type]
    await chain(Invocation("http", "svc", "/"))  # no route: no plan, nothing asked
    assert seen == [0, 1, 0, 0, 0, 0]  # the canary's plan retried its first call's 503
    # Asked once for the canary's plan; a route without one is asked again each call.
    assert by_route.made == ["canary", "plain", "plain"]
