"""Per-service mTLS: services that take only verified callers, even on a permissive listener.

`tls.services` names services whose mode is stricter than the data plane's:
on a `permissive` data plane, a `strict` service refuses a call that came
over plaintext (`inv.peer` empty) with `UNAUTHORIZED`, before any rule or
app sees it, while its neighbours still take plaintext during a migration.
"""

from __future__ import annotations

import logging

from sofamesh.chain import Handler
from sofamesh.model import Invocation, Result, Status

log = logging.getLogger("sofamesh.tls")


class RequireMtlsFilter:
    """Refuses plaintext calls to `services` (the inbound chain's, right after stats)."""

    def __init__(self, services: frozenset[str]) -> None:
        self.services = services
        self.refused = 0

    async def invoke(self, inv: Invocation, call_next: Handler) -> Result:
        if not inv.peer and inv.service in self.services:
            self.refused += 1
            if self.refused & (self.refused - 1) == 0:  # 1st, 2nd, 4th...: visible, not a flood
                log.warning("refused a plaintext call to %s: it takes mTLS only", inv.service)
            return Result.failure(
                Status.UNAUTHORIZED, f"{inv.service} takes calls over mutual TLS only"
            )
        return await call_next(inv)
