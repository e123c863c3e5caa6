"""Retry on connect failure, to another endpoint.

Failures where the request provably never reached a provider
(`Status.CONNECT_FAILED`) are retried for every call, even non-idempotent ones.
A connection reset (`Status.UPSTREAM_RESET`) is retried only for idempotent
calls (HTTP GET, PUT, DELETE, ...), where a provider that did see the request
may safely see it twice: that covers a provider killed between accepting a
connection and answering. The governance issue's retry policy (retry on 5xx,
budgets, backoff) replaces this filter with a richer one of the same shape.
"""

from __future__ import annotations

from collections.abc import Callable

from sofamesh.chain import Handler
from sofamesh.config.model import PolicyConfig
from sofamesh.model import Invocation, Result, Status
from sofamesh.stats import Stats


class ConnectRetryFilter:
    def __init__(self, policy_for: Callable[[str], PolicyConfig], stats: Stats) -> None:
        self._policy_for = policy_for
        self._stats = stats

    async def invoke(self, inv: Invocation, call_next: Handler) -> Result:
        retries = self._policy_for(inv.service).connect_retries
        while True:
            result = await call_next(inv)
            retryable = result.status is Status.CONNECT_FAILED or (
                result.status is Status.UPSTREAM_RESET and inv.idempotent
            )
            if not retryable or inv.attempt >= retries:
                return result
            inv.attempt += 1
            self._stats.incr("upstream_rq_retry")
