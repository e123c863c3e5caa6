"""Request mirroring: copy a share of a route's calls to a subset, fire and forget.

Envoy's ``request_mirror_policies``: the copy goes to the mirror subset, its
answer is discarded, and the caller never waits for it or sees its failure.
The copy carries `SHADOW_HEADER` (Envoy appends ``-shadow`` to the host; a
header keeps the service name intact) so the receiving side can tell.

This filter sits last among the governance filters, so the copy skips the
caller's limits and breakers (it is not the caller's traffic) and runs only
the concrete levels below: timeout, one attempt, balancing, the transport.
Copies run in the task group given at construction; at most `max_in_flight`
at once, beyond which they are dropped and counted (a slow mirror must not
pile up memory in the caller).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable

import anyio.abc

from sofamesh.chain import Handler
from sofamesh.governance.filters.select import Target
from sofamesh.model import Invocation, Result

SHADOW_HEADER = "x-sofamesh-shadow"
log = logging.getLogger("sofamesh.governance.mirror")


class MirrorFilter:
    def __init__(
        self,
        task_group: anyio.abc.TaskGroup,
        *,
        max_in_flight: int = 64,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._tg = task_group
        self._max = max_in_flight
        self._rand = rand
        self.in_flight = 0

    def invoke(self, inv: Invocation, call_next: Handler) -> Awaitable[Result]:
        # Only spawns on the way down: the call itself costs no coroutine frame here.
        target = inv.route
        if isinstance(target, Target) and target.mirror is not None:
            mirror, share = target.mirror
            if share >= 1.0 or self._rand() < share:
                self._spawn(inv, mirror, call_next)
        return call_next(inv)

    def _spawn(self, inv: Invocation, mirror: Target, call_next: Handler) -> None:
        leaf = mirror.leaf
        if self.in_flight >= self._max:
            if leaf is not None:
                leaf.mirror_dropped += 1
            return
        headers = inv.headers.copy()
        headers.set(SHADOW_HEADER, "true")
        copy = Invocation(
            protocol=inv.protocol,
            service=inv.service,
            method=inv.method,
            headers=headers,
            caller=inv.caller,
            deadline=inv.deadline,
            payload=inv.payload,
            route=mirror,
        )
        if leaf is not None:
            leaf.mirrored += 1
        self.in_flight += 1
        self._tg.start_soon(self._send, copy, call_next)

    async def _send(self, copy: Invocation, call_next: Handler) -> None:
        try:
            await call_next(copy)
        except Exception:  # the caller must never see a mirror's failure
            log.debug("mirrored call to %s failed", copy.service, exc_info=True)
        finally:
            self.in_flight -= 1
