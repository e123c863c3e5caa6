"""Active health checks: probe endpoints between registry updates and mark them down.

A registry says an endpoint exists; only a probe says it answers. This module
follows Envoy's active health checking (`config.core.v3.HealthCheck`):

| ours | Envoy |
|---|---|
| `interval` (5 s), `jitter` (10 % of it) | `interval`, `interval_jitter_percent` |
| `timeout` (1 s): a probe slower than this failed | `timeout` |
| `unhealthy_threshold` (3 failures in a row) | `unhealthy_threshold` |
| `healthy_threshold` (2 successes in a row) | `healthy_threshold` |
| `kind="tcp"`: the connection opens | `tcp_health_check` with no payload |
| `kind="http"`: `GET path` answers 2xx | `http_health_check` (`expected_statuses`: 200) |
| `kind="bolt"`: a heartbeat gets a SUCCESS ack | (MOSN's / SOFARPC's Bolt heartbeat) |

`kind` is `tcp` or the name of a protocol with a probe (`protocols.health_kinds()`);
the HTTP and Bolt probes live in their slices (`protocols/http/probe.py`,
`protocols/bolt/probe.py`), and this module keeps the schedule and the TCP probe.

Differences: an endpoint the registry announces starts *healthy* (Envoy starts
hosts unhealthy until a first check passes) because the registry vouches for
it and waiting `interval` before routing to a new instance would slow every
scale-up; HTTP accepts any 2xx by default.

Shape: `HealthState` is the pure part (counters and transitions, no I/O, no
clock); `HealthChecker` runs one probe loop per endpoint inside its task group
and offers `is_healthy()`, `healthy()` (with Envoy's panic rule: when every
endpoint is down, route to all rather than none), `wait_changed()` and
`statistics()`.
"""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType

import anyio
import anyio.abc
import attrs

from sofamesh import protocols
from sofamesh.endpoint import Endpoint
from sofamesh.transport.errors import TransportError
from sofamesh.upstream.settings import HealthCheckConfig as HealthCheckConfig

log = logging.getLogger("sofamesh.upstream.health")

Prober = Callable[[Endpoint], Awaitable[bool]]
# A probe's connection to an endpoint, offering these ALPN protocols: plain TCP, or mutual TLS
# to an endpoint that publishes it (the runtime's, as its calls get).
ProbeConnect = Callable[[Endpoint, tuple[str, ...]], Awaitable[anyio.abc.ByteStream]]


class Health(enum.Enum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


@attrs.define
class _Host:
    health: Health = Health.HEALTHY
    successes: int = 0  # in a row
    failures: int = 0  # in a row


@attrs.frozen
class HealthStatistics:
    endpoints: int
    unhealthy: int
    checks: int
    failed_checks: int
    transitions: int


class HealthState:
    """Per-endpoint streaks and the healthy/unhealthy verdict: pure, no I/O, no clock."""

    def __init__(self, config: HealthCheckConfig) -> None:
        self.config = config
        self._hosts: dict[str, _Host] = {}
        self.checks = self.failed_checks = self.transitions = 0

    def set_endpoints(self, keys: Iterable[str]) -> None:
        """Track exactly `keys`: new ones start healthy, vanished ones are forgotten."""
        keys = set(keys)
        self._hosts = {k: self._hosts.get(k) or _Host() for k in keys}

    def record(self, key: str, ok: bool) -> Health | None:
        """One probe's outcome; the new verdict if it changed, else None."""
        host = self._hosts.get(key)
        if host is None:
            return None  # removed while its probe ran
        self.checks += 1
        cfg = self.config
        if ok:
            host.successes, host.failures = host.successes + 1, 0
            flip = host.health is Health.UNHEALTHY and host.successes >= cfg.healthy_threshold
        else:
            self.failed_checks += 1
            host.successes, host.failures = 0, host.failures + 1
            flip = host.health is Health.HEALTHY and host.failures >= cfg.unhealthy_threshold
        if not flip:
            return None
        host.health = Health.UNHEALTHY if host.health is Health.HEALTHY else Health.HEALTHY
        self.transitions += 1
        return host.health

    def is_healthy(self, key: str) -> bool:
        host = self._hosts.get(key)
        return host is None or host.health is Health.HEALTHY  # unknown: not ours to veto

    def statistics(self) -> HealthStatistics:
        unhealthy = sum(h.health is Health.UNHEALTHY for h in self._hosts.values())
        return HealthStatistics(
            len(self._hosts), unhealthy, self.checks, self.failed_checks, self.transitions
        )


# -- probes ---------------------------------------------------------------------------------


async def tcp_probe(ep: Endpoint, config: HealthCheckConfig) -> bool:
    """The endpoint accepts a TCP connection."""
    stream = await anyio.connect_tcp(ep.host, ep.port)
    await stream.aclose()
    return True


def probe_of(config: HealthCheckConfig, connect: ProbeConnect | None = None) -> Prober:
    """The probe `config.kind` names: TCP here, a protocol's from its slice (the registry's).

    `connect`: how a protocol's probe connects (default plain TCP); the TCP probe stays a
    plain connect, which shows the port is open without a handshake."""
    probe = protocols.health_probe(config.kind)
    if probe is None:
        return lambda ep: tcp_probe(ep, config)
    return lambda ep: probe(ep, config, connect)


# -- the checker ------------------------------------------------------------------------------


class HealthChecker:
    """Probes every endpoint it is given, one loop each, until closed.

    `async with HealthChecker(config) as hc:` then `hc.set_endpoints(snapshot)` on
    every registry snapshot, and `hc.healthy(endpoints)` when choosing.
    """

    def __init__(
        self,
        config: HealthCheckConfig,
        *,
        prober: Prober | None = None,
        connect: ProbeConnect | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.state = HealthState(config)
        self._prober: Prober = prober or probe_of(config, connect)
        self._rand = rand
        self._loops: dict[str, anyio.CancelScope] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._changed = anyio.Event()

    async def __aenter__(self) -> HealthChecker:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(et, e, tb)

    def set_endpoints(self, endpoints: Iterable[Endpoint]) -> None:
        """Probe exactly these endpoints from now on."""
        if self._tg is None:
            raise RuntimeError("HealthChecker used outside its 'async with' block")
        wanted = {ep.key: ep for ep in endpoints}
        self.state.set_endpoints(wanted)
        for key in set(self._loops) - set(wanted):
            self._loops.pop(key).cancel()
        for key, ep in wanted.items():
            if key not in self._loops:
                self._loops[key] = scope = anyio.CancelScope()
                self._tg.start_soon(self._probe_forever, ep, scope)

    def is_healthy(self, ep: Endpoint) -> bool:
        return self.state.is_healthy(ep.key)

    def healthy(self, endpoints: Iterable[Endpoint]) -> list[Endpoint]:
        """The healthy ones; all of them if none is (Envoy's panic routing)."""
        endpoints = list(endpoints)
        return [ep for ep in endpoints if self.is_healthy(ep)] or endpoints

    async def wait_changed(self) -> None:
        """Return after the next healthy/unhealthy transition."""
        await self._changed.wait()

    def statistics(self) -> HealthStatistics:
        return self.state.statistics()

    async def _probe_forever(self, ep: Endpoint, scope: anyio.CancelScope) -> None:
        with scope:
            # Spread the first probes over one interval so a large snapshot does not
            # probe every endpoint in the same instant.
            await anyio.sleep(self.config.interval * self._rand())
            while True:
                self._record(ep, await self._probe_once(ep))
                spread = 1 + self.config.jitter * (2 * self._rand() - 1)
                await anyio.sleep(self.config.interval * spread)

    async def _probe_once(self, ep: Endpoint) -> bool:
        with anyio.move_on_after(self.config.timeout):
            try:
                return await self._prober(ep)
            except (OSError, anyio.BrokenResourceError, anyio.EndOfStream, TransportError):
                return False  # a probe answers False itself for what its protocol rejects
        return False  # timed out

    def _record(self, ep: Endpoint, ok: bool) -> None:
        verdict = self.state.record(ep.key, ok)
        if verdict is None:
            return
        log.warning(
            "%s %s is now %s (active %s health check)",
            ep.service,
            ep.address,
            verdict.value,
            self.config.kind,
        )
        self._changed.set()
        self._changed = anyio.Event()
