"""Which chain serves a listener's call: an inbound call by its service (an upstream an SDK
registered, else the listener's that publishes it, else a catch-all's, else refused), and
every listener's chains wrapped in its access log.
"""

from __future__ import annotations

import logging

from sofamesh.chain import Handler
from sofamesh.config import Address, ConfigError, ListenerConfig, MeshConfig
from sofamesh.filters.stats import never_known
from sofamesh.model import Invocation, Result
from sofamesh.observability.access_log import AccessLog, listener_access_logs
from sofamesh.protocols import Route
from sofamesh.runtime import Runtime
from sofamesh.sidecar.publishing import Registration

log = logging.getLogger("sofamesh.sidecar")

# The counter of inbound calls refused because this sidecar serves no such service.
UNKNOWN_SERVICE = "inbound.unknown_service"


class Routing:
    """The listeners' chains and the inbound routes (a part of `Sidecar`)."""

    config: MeshConfig
    runtime: Runtime
    registrations: dict[tuple[str, str], Registration]
    access_logs: dict[str, AccessLog]  # by listener name
    # By upstream: the declared services' chains, then a catch-all's (`caught`).
    _inbound_chains: tuple[dict[Address, Handler], dict[Address, Handler]]

    def _route(self, lc: ListenerConfig, name: str) -> Route:
        # A service is served by the upstream an SDK registered for it, else the upstream of
        # the listener that publishes it. Anything else is refused (a caller must not reach
        # the app, past its auth rules, by naming a service nobody serves), unless this
        # listener is a catch-all on purpose. Refusals are one counter: the names are the
        # caller's choice, so a series per name would let any caller grow the stats.
        static = {
            (svc, other.protocol): other.upstream
            for other in self.config.inbound
            if other.upstream is not None
            for svc in other.services
        }
        fallback = lc.upstream if lc.catch_all else None

        def route(service: str) -> Handler | None:
            reg = self.registrations.get((service, lc.protocol))
            upstream = reg.upstream if reg else static.get((service, lc.protocol))
            # A catch-all's names are forwarded, yet counted under one stats row (never_known).
            caught = upstream is None and fallback is not None
            upstream = upstream or fallback
            if upstream is None:
                self._refuse_unknown(service, lc)
                return None
            if access_log is None:
                return self._chain_to(upstream, caught)
            chains = logged[caught]
            chain = chains.get(upstream)
            if chain is None:
                chain = chains[upstream] = access_log.wrap(self._chain_to(upstream, caught))
            return chain

        access_log = self.access_logs.get(name)
        logged: tuple[dict[Address, Handler], dict[Address, Handler]] = ({}, {})  # by `caught`
        return route

    def _refuse_unknown(self, service: str, lc: ListenerConfig) -> None:
        stats = self.runtime.stats
        stats.incr(UNKNOWN_SERVICE)
        refused = stats.counters[UNKNOWN_SERVICE]
        # A log line for the 1st, 2nd, 4th, 8th... refusal: visible, yet a caller sending
        # names in a loop cannot flood the log.
        if refused & (refused - 1) == 0:
            log.warning(
                "refused inbound %s call to %r: this sidecar does not serve it (%d refused so far)",
                lc.protocol,
                service[:200],
                refused,
            )

    def _chain_to(self, upstream: Address, caught: bool = False) -> Handler:
        chains = self._inbound_chains[caught]
        chain = chains.get(upstream)
        if chain is None:
            known = never_known if caught else None
            chain = self.runtime.inbound_chain(self._forward(upstream), known=known)
            chains[upstream] = chain
        return chain

    def _forward(self, upstream: Address) -> Handler:
        rt = self.runtime

        async def forward(inv: Invocation) -> Result:
            return await rt.send(upstream.host, upstream.port, inv)

        return forward

    def _access_logs(self) -> dict[str, AccessLog]:
        """Each listener's access log (`access_log:`, unless its path is `off`)."""
        logs, problems = listener_access_logs(self.config, self.runtime.clock)
        if problems:
            raise ConfigError(problems)
        return logs

    def _logged(self, name: str, chain: Handler) -> Handler:
        access_log = self.access_logs.get(name)
        return chain if access_log is None else access_log.wrap(chain)

    def reopen_logs(self) -> None:
        """Reopen every access-log file at its next flush (SIGHUP, after rotation)."""
        for access_log in self.access_logs.values():
            access_log.sink.reopen()
