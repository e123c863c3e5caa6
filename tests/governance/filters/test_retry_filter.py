"""RetryFilter: which failures are retried, where, how often, when; budgets and per-try timeouts."""

from __future__ import annotations

import random
from typing import Any

import anyio
import pytest
from govhelp import Clusters, Sleeps, Terminal, call, chain, endpoints, governance

from sofamesh.clock import FakeClock
from sofamesh.config.model import PolicyConfig
from sofamesh.governance.compose import retry_filter as make_retry_filter
from sofamesh.governance.filters.retry import backoff, retryable
from sofamesh.governance.filters.route import RouteFilter
from sofamesh.governance.rules import parse_rules
from sofamesh.model import Result, Status
from sofamesh.stats import Stats
from sofamesh.upstream.balance import BalanceFilter

pytestmark = pytest.mark.anyio

GATEWAY = Result(Status.APP_ERROR, code=503)
# What the runtime passes in: each protocol's gateway codes.
GATEWAY_CODES = {
    "http": frozenset({502, 503, 504}),
    "grpc": frozenset({14}),
    "bolt": frozenset({4}),
}


def policy(**kw: Any) -> Any:
    return parse_rules({"routes": [{"service": "s", "retry": kw}]}).routes[0].retry


def retrying(
    retry: dict[str, Any] | None,
    *script: Result | Status,
    clock: FakeClock | None = None,
    n: int = 3,
    sleeps: Sleeps | None = None,
    terminal: Terminal | None = None,
) -> tuple[Any, Terminal, Any, Sleeps]:
    clock = clock or FakeClock()
    rules = {"routes": [{"service": "orders", **({"retry": retry} if retry is not None else {})}]}
    g = governance(rules, clock)
    term = terminal or Terminal(*script)
    sleeps = sleeps or Sleeps()
    retry_filter = make_retry_filter(
        g,
        lambda s: PolicyConfig(connect_retries=1),
        Stats(),
        clock,
        gateway_codes=GATEWAY_CODES.__getitem__,
        sleep=sleeps,
        rand=random.Random(3).random,
    )
    balance = BalanceFilter(Clusters(clock, orders=endpoints(n=n)), clock)  # type: ignore[arg-type]
    return chain([RouteFilter(g, clock), retry_filter, balance], term), term, g, sleeps


async def test_gateway_error_is_retried_on_another_endpoint() -> None:
    handler, term, g, _ = retrying({"attempts": 3}, GATEWAY, GATEWAY, Status.OK)
    result = await handler(call())
    assert result.ok
    assert len(set(term.endpoints)) == 3  # never the same endpoint twice
    assert g.snapshot()["rules"]["routes"][0]["retries"] == 2


async def test_attempts_count_the_first_try() -> None:
    handler, term, _, _ = retrying({"attempts": 2}, GATEWAY)
    assert (await handler(call())).code == 503
    assert len(term.calls) == 2


async def test_non_idempotent_call_is_retried_only_on_connect_failure() -> None:
    handler, term, _, _ = retrying({"attempts": 3}, Status.UPSTREAM_RESET)
    assert (await handler(call(idempotent=False))).status is Status.UPSTREAM_RESET
    assert len(term.calls) == 1
    handler, term, _, _ = retrying({"attempts": 3}, Status.CONNECT_FAILED, Status.OK)
    assert (await handler(call(idempotent=False))).ok
    assert len(term.calls) == 2
    handler, term, _, _ = retrying(
        {"attempts": 3, "non_idempotent": True}, Status.UPSTREAM_RESET, Status.OK
    )
    assert (await handler(call(idempotent=False))).ok


def retries(pol: Any, inv: Any, result: Result) -> bool:
    return retryable(pol, inv, result, GATEWAY_CODES[inv.protocol])


def test_retryable_names_each_condition_per_protocol() -> None:
    c = call()
    assert retries(policy(retry_on=["reset"]), c, Result(Status.UPSTREAM_RESET))
    assert not retries(policy(retry_on=["connect_failure"]), c, Result(Status.UPSTREAM_RESET))
    assert retries(policy(retry_on=["app_error"]), c, Result(Status.APP_ERROR, code=500))
    assert not retries(policy(retry_on=["gateway_error"]), c, Result(Status.APP_ERROR, code=500))
    assert retries(policy(retry_on=["gateway_error"]), c, Result(Status.APP_ERROR, code=504))
    assert retries(policy(retry_on=["timeout"]), c, Result(Status.TIMEOUT))
    assert retries(policy(retry_on=[], retriable_codes=[409]), c, Result(Status.OK, code=409))
    assert not retries(policy(), c, Result(Status.OK, code=200))
    assert not retries(policy(), c, Result(Status.RATE_LIMITED))
    grpc = call(protocol="grpc")
    assert retries(policy(retry_on=["gateway_error"]), grpc, Result(Status.APP_ERROR, code=14))
    assert not retries(policy(retry_on=["gateway_error"]), grpc, Result(Status.APP_ERROR, code=503))
    bolt = call(protocol="bolt", idempotent=False)
    assert not retries(policy(retry_on=["gateway_error"]), bolt, Result(Status.APP_ERROR, code=4))
    assert retries(
        policy(retry_on=["gateway_error"], non_idempotent=True),
        bolt,
        Result(Status.APP_ERROR, code=4),
    )


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    p = policy(backoff={"base_interval": 0.1, "max_interval": 0.5})
    assert backoff(p, 1, lambda: 0.999) == pytest.approx(0.0999)
    assert backoff(p, 2, lambda: 0.999) == pytest.approx(0.2997)
    assert backoff(p, 5, lambda: 0.999) == pytest.approx(0.4995)  # capped
    assert backoff(p, 3, lambda: 0.0) == 0.0


async def test_backoff_is_slept_between_tries() -> None:
    spec = {"attempts": 3, "backoff": {"base_interval": 0.1, "max_interval": 1.0}}
    handler, _, _, sleeps = retrying(spec, GATEWAY, GATEWAY, Status.OK)
    await handler(call())
    assert len(sleeps.asked) == 2
    assert 0 <= sleeps.asked[0] <= 0.1 and 0 <= sleeps.asked[1] <= 0.3


async def test_no_retry_that_cannot_start_before_the_deadline() -> None:
    clock = FakeClock()
    spec = {"attempts": 3, "backoff": {"base_interval": 1.0}}
    handler, term, _, _ = retrying(spec, GATEWAY, Status.OK, clock=clock, sleeps=Sleeps(clock))
    result = await handler(call(deadline=clock.now() + 0.001))
    assert result.code == 503 and len(term.calls) == 1


async def test_budget_caps_retries_in_flight() -> None:
    gate = anyio.Event()
    term = Terminal(GATEWAY, gate=gate)
    budget = {"budget_percent": 0.0, "min_retry_concurrency": 1}
    handler, _, g, _ = retrying({"attempts": 2, "budget": budget}, terminal=term, n=6)
    results: list[Result] = []

    async def one() -> None:
        results.append(await handler(call()))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(one)
        while term.entered < 3:
            await anyio.lowlevel.checkpoint()
        gate.set()
    # Three failed at once; one retry may be in flight, the other two overflow.
    assert term.entered == 4
    assert g.snapshot()["rules"]["routes"][0]["retry_overflow"] == 2


async def test_per_try_timeout_ends_an_attempt_and_retries() -> None:
    never = anyio.Event()
    slow_then_ok = Terminal(gate=never)
    handler, _, g, _ = retrying(
        {"attempts": 2, "retry_on": ["timeout"], "per_try_timeout": 0.01}, terminal=slow_then_ok
    )
    result = await handler(call())  # both attempts hang: a small real timeout is unavoidable
    assert result.status is Status.TIMEOUT and "per-try timeout" in result.detail
    assert slow_then_ok.entered == 2
    assert g.snapshot()["rules"]["routes"][0]["per_try_timeouts"] == 2


async def test_without_a_policy_only_connect_failures_are_retried() -> None:
    handler, term, _, _ = retrying(None, Status.CONNECT_FAILED, Status.CONNECT_FAILED, Status.OK)
    result = await handler(call())
    assert result.status is Status.CONNECT_FAILED  # connect_retries=1: two tries
    assert len(term.calls) == 2
    handler, term, _, _ = retrying(None, GATEWAY, Status.OK)
    assert (await handler(call())).code == 503 and len(term.calls) == 1
