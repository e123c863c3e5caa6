"""Per-call timeout: the tighter of the caller's deadline and the service's policy.

The deadline is absolute on the mesh clock and travels downstream: each hop
sends the *remaining* time (`x-sofamesh-timeout-ms` in HTTP, the timeout field
in Bolt, `grpc-timeout` in gRPC), so clocks need not agree across hosts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

import anyio

from sofamesh.chain import Handler, completed
from sofamesh.clock import Clock
from sofamesh.config.model import PolicyConfig
from sofamesh.deadlines import DeadlineWatch
from sofamesh.model import Invocation, Result, Status


class Policies(Protocol):
    """The services' own policies and everyone else's (`config.model.MeshConfig` has them)."""

    @property
    def services(self) -> Mapping[str, PolicyConfig]: ...
    @property
    def policy(self) -> PolicyConfig: ...


class TimeoutFilter:
    """Sets the call's deadline, and holds what runs below to it.

    `watch`, when given, arms deadlines on a shared `DeadlineWatch` (cheaper
    per call than a timed scope). With `enforce=False` the filter only sets
    the deadline: for a chain whose every wait below already ends by
    `inv.deadline` (the runtime's outbound chain: retries and balancing check
    it, and `Runtime.send` holds each attempt to it), which spares each call
    a cancel scope (about 8 us in the sidecar).

    `policies`, when given, are read once, as the chain is composed: each call's
    timeout is then one dict look-up, not a `policy_for` call (for a configuration
    that does not change under the chain, as the runtime's does not).
    """

    def __init__(
        self,
        policy_for: Callable[[str], PolicyConfig],
        clock: Clock,
        watch: DeadlineWatch | None = None,
        *,
        enforce: bool = True,
        policies: Policies | None = None,
    ) -> None:
        self._policy_for = policy_for
        self._clock = clock
        self._watch = watch
        self._enforce = enforce
        self._policies = policies

    def invoke(self, inv: Invocation, call_next: Handler) -> Awaitable[Result]:
        return self.bind(call_next)(inv)

    def bind(self, call_next: Handler) -> Handler:
        now_of, enforce, within = self._clock.now, self._enforce, self._within
        timeout_of, default = self._timeouts()

        def deadline(inv: Invocation) -> Awaitable[Result]:
            now = inv.now  # the call's reading (`sofamesh.chain`), else the clock's
            if now is None:
                now = now_of()
            limit = now + timeout_of(inv.service, default)
            if inv.deadline is None or limit < inv.deadline:
                inv.deadline = limit
            remaining = inv.deadline - now
            if remaining <= 0.0:  # a float with a float: a specialised compare, not a generic one
                return completed(
                    Result.failure(
                        Status.TIMEOUT, f"deadline for {inv.service} passed before the call"
                    )
                )
            if not enforce:
                return call_next(inv)
            return within(inv, call_next, remaining)

        return deadline

    def _timeouts(self) -> tuple[Callable[[str, float], float], float]:
        """A service's timeout, from `policies` read now (a dict's `get`: C), else asked."""
        policies = self._policies
        if policies is not None:
            timeouts = {name: p.timeout for name, p in policies.services.items()}
            return timeouts.get, policies.policy.timeout
        policy_for = self._policy_for
        return lambda service, _default: policy_for(service).timeout, 0.0

    async def _within(self, inv: Invocation, call_next: Handler, remaining: float) -> Result:
        watch = self._watch
        with anyio.move_on_after(remaining) if watch is None else watch.cancel_after(remaining):
            return await call_next(inv)
        return timed_out(inv, remaining)


def timed_out(inv: Invocation, seconds: float) -> Result:
    """The result of a call that did not answer within `seconds`."""
    return Result.failure(
        Status.TIMEOUT, f"{inv.service} did not answer within {seconds * 1000:.0f} ms", inv.endpoint
    )
