"""`build_chain`: a filter that binds is composed through `bind`, any other through `invoke`."""

from __future__ import annotations

from collections.abc import Awaitable

import pytest

from sofamesh.chain import Handler, build_chain
from sofamesh.clock import FakeClock
from sofamesh.filters.deadline import InboundDeadlineFilter
from sofamesh.model import Invocation, Result, Status

pytestmark = pytest.mark.anyio


class Stepped:
    """A filter with `invoke` only: the chain calls it with the next handler each time."""

    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name = log, name

    async def invoke(self, inv: Invocation, call_next: Handler) -> Result:
        self.log.append(self.name)
        return await call_next(inv)


class Bound:
    """A filter that binds: `invoke` is never called by the chain, `bind` once per chain."""

    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name = log, name
        self.binds = 0

    def invoke(self, inv: Invocation, call_next: Handler) -> Awaitable[Result]:
        raise AssertionError("the chain calls the bound handler, not invoke")

    def bind(self, call_next: Handler) -> Handler:
        self.binds += 1

        def handle(inv: Invocation) -> Awaitable[Result]:
            self.log.append(self.name)
            return call_next(inv)

        return handle


async def ok(inv: Invocation) -> Result:
    return Result(Status.OK)


async def test_bound_and_stepped_filters_run_in_order_each_call() -> None:
    log: list[str] = []
    bound = Bound(log, "b")
    chain = build_chain([Stepped(log, "a"), bound, Stepped(log, "c")], ok)
    for _ in range(2):
        assert (await chain(Invocation("http", "svc", "/"))).ok
    assert log == ["a", "b", "c"] * 2
    assert bound.binds == 1  # bound when composed, not per call


async def test_a_binding_filters_invoke_is_its_bound_handler() -> None:
    clock = FakeClock()
    late = Invocation("http", "svc", "/", deadline=clock.now() - 1)
    by_invoke = await InboundDeadlineFilter(clock).invoke(late, ok)
    by_chain = await build_chain([InboundDeadlineFilter(clock)], ok)(late)
    assert by_invoke.status is by_chain.status is Status.TIMEOUT
    assert by_invoke.detail == by_chain.detail == "deadline for svc passed on arrival"
    on_time = Invocation("http", "svc", "/", deadline=clock.now() + 1)
    assert (await InboundDeadlineFilter(clock).invoke(on_time, ok)).ok
