"""Protocols loaded on first use: a stand-in support per protocol, servers that wait for
their listener's first connection.

An idle sidecar with every protocol configured would otherwise import every slice and
its codecs at start (Bolt with Hessian 2, the HTTP/2 family with gRPC and Dubbo: about
3 MB, docs/performance.md "Idle memory"). `Runtime` holds a `LazySupport` for each
protocol the registry marks `lazy`, with the decisions the registry declares:

- its first `send` loads the protocol's family (`protocols.family`: h2 with gRPC and
  Dubbo, which plug into h2's listeners), opens each real support in a task the runtime
  owns (`Holder`), and puts the real supports into `runtime.protocols` in place of the
  stand-ins, so later calls reach the real `send` with no frame of ours; a caller that
  kept the stand-in reaches it too, its `send` being rebound to the real one.
- its servers (`LazyServer`) listen at once and build the real server when the
  listening socket becomes readable: the first connection waits in the kernel's accept
  queue while the family loads.

Two first uses at once load once: the second waits for the first under a lock. The load
is shielded, so a caller that gives up while it runs leaves it whole for the next.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio
import anyio.abc

from sofamesh.chain import Handler
from sofamesh.clock import Clock
from sofamesh.config.model import LimitsConfig, PolicyConfig
from sofamesh.model import Invocation, Result
from sofamesh.protocols import PROTOCOLS, family, health_probe, make_protocols
from sofamesh.protocols.base import HealthProbe, ProtocolSupport, Route, Server
from sofamesh.transport.heap import trim_heap
from sofamesh.transport.serving import leaves

if TYPE_CHECKING:  # TLS itself loads with a `tls:` config (runtime.py)
    from sofamesh.transport.tls import ClientTls

Supports = dict[str, ProtocolSupport]


class Holder:
    """Keeps the loaded supports open (their pools' tasks) until the runtime closes."""

    def __init__(self) -> None:
        self._tg: anyio.abc.TaskGroup | None = None
        self._closing: anyio.Event | None = None

    async def __aenter__(self) -> Holder:
        self._closing = anyio.Event()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        return self

    async def __aexit__(self, *exc: Any) -> bool | None:
        assert self._tg is not None and self._closing is not None
        self._closing.set()  # each support leaves its context as it would have at close
        tg, self._tg = self._tg, None
        return await tg.__aexit__(*exc)

    async def open(self, supports: Iterable[ProtocolSupport]) -> None:
        if self._tg is None:
            raise RuntimeError("a protocol is used outside its runtime's `async with`")
        await self._tg.start(self._hold, list(supports))

    async def _hold(
        self, supports: list[ProtocolSupport], *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        assert self._closing is not None
        async with AsyncExitStack() as stack:
            for support in supports:
                await stack.enter_async_context(support)
            task_status.started()
            await self._closing.wait()


class Family:
    """Protocols that load together, and their one load."""

    def __init__(
        self,
        names: tuple[str, ...],
        build: Callable[[tuple[str, ...]], Supports],
        protocols: Supports,
        holder: Holder,
    ) -> None:
        self.names = names
        self.loaded: Supports | None = None
        self.tls: ClientTls | None = None
        self.stand_ins: dict[str, LazySupport] = {}
        self._build, self._protocols, self._holder = build, protocols, holder
        self._lock: anyio.Lock | None = None  # made in the event loop, by the first use

    async def load(self) -> Supports:
        if self.loaded is not None:
            return self.loaded
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            loaded = self.loaded
            if loaded is None:
                with anyio.CancelScope(shield=True):
                    loaded = self.loaded = await self._open()
        assert loaded is not None  # a shield's scope swallows no exception of its body
        return loaded

    async def _open(self) -> Supports:
        built = self._build(self.names)
        if self.tls is not None:
            for support in built.values():
                support.use_tls(self.tls)
        await self._holder.open(built.values())
        self._protocols.update(built)  # the runtime's own lookups find the real ones now
        for name, stand_in in self.stand_ins.items():
            stand_in.send = built[name].send  # type: ignore[method-assign]
        # What the imports read and dropped (each module's code as bytes) goes back to
        # the OS, as start-up's does once the sidecar is ready.
        trim_heap()
        return built


class IdleStatistics(NamedTuple):
    """A listener's counts before its first connection."""

    active_connections: int = 0
    accepted_connections: int = 0
    rejected_connections: int = 0
    evicted_connections: int = 0
    draining: bool = False


class LazyServer:
    """Listens at once; builds the real server when the first connection waits."""

    def __init__(self, family: Family, build: Callable[[Supports], Server]) -> None:
        self.real: Server | None = None
        self._family, self._build = family, build
        self._draining = False
        self._waiting: anyio.CancelScope | None = None

    async def serve(
        self,
        listener: Any,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        sockets = _sockets(listener)
        served = False
        try:
            if sockets:  # else a hand-off (transparent mode): load now
                task_status.started()
                task_status = anyio.TASK_STATUS_IGNORED
                with anyio.CancelScope() as self._waiting:
                    if not self._draining:
                        await _first_readable(sockets)
            if not self._draining:
                self.real = self._build(await self._family.load())
            if self.real is not None and not self._draining:
                served = True  # the real server closes the listener when it stops
                await self.real.serve(listener, task_status=task_status)
        finally:
            if not served:  # drained or cancelled before its first connection
                await anyio.aclose_forcefully(listener)
        if not served:
            task_status.started()  # a hand-off drained at once: its starter waits no more

    async def drain(self) -> None:
        self._draining = True
        if self._waiting is not None:
            self._waiting.cancel()
        if self.real is not None:
            await self.real.drain()

    def statistics(self) -> Any:
        real: Any = self.real
        return IdleStatistics(draining=self._draining) if real is None else real.statistics()


class LazySupport:
    """A protocol's support until its first use: the registry's decisions, and `load`."""

    def __init__(self, name: str, family: Family) -> None:
        reg = PROTOCOLS[name]
        self.name = name
        self.enforces_deadline = reg.enforces_deadline
        self.gateway_codes = reg.gateway_codes
        self.endpoint_protocols = reg.endpoint_protocols
        self.alpn = reg.alpn
        self._family = family
        family.stand_ins[name] = self

    @property
    def health_probe(self) -> HealthProbe | None:
        return health_probe(self.name)

    def use_tls(self, client: ClientTls) -> None:
        self._family.tls = client  # given to the real supports as they load
        if self._family.loaded is not None:
            self._family.loaded[self.name].use_tls(client)

    async def __aenter__(self) -> LazySupport:
        return self  # the real support opens as it loads, in the runtime's `Holder`

    async def __aexit__(self, *exc: object) -> None:
        return None

    def outbound_server(self, chain: Handler, app: str, limits: LimitsConfig | None) -> Server:
        name = self.name
        return LazyServer(self._family, lambda s: s[name].outbound_server(chain, app, limits))

    def inbound_server(self, route: Route, limits: LimitsConfig | None) -> Server:
        name = self.name
        return LazyServer(self._family, lambda s: s[name].inbound_server(route, limits))

    async def send(self, host: str, port: int, inv: Invocation) -> Result:
        """The first call: load, then send with the real support (rebound here after)."""
        real = (await self._family.load())[self.name]
        return await real.send(host, port, inv)

    def __getattr__(self, attr: str) -> Any:  # the real support's own (its pool), once loaded
        loaded = self.__dict__["_family"].loaded
        if loaded is None:
            raise AttributeError(f"{self.name} has not loaded: no {attr!r} before its first use")
        return getattr(loaded[self.name], attr)


def lazy_protocols(
    policy: PolicyConfig, clock: Clock, holder: Holder, *, preload: bool = False
) -> Supports:
    """Every protocol: the eager ones built, a stand-in for each lazy one; with `preload`
    (the config's `preload_protocols`), every one built now, no stand-in."""
    if preload:
        return make_protocols(policy, clock)
    eager = tuple(n for n, reg in PROTOCOLS.items() if not reg.lazy)
    protocols = make_protocols(policy, clock, eager)
    families: dict[tuple[str, ...], Family] = {}

    def build(names: tuple[str, ...]) -> Supports:
        return make_protocols(policy, clock, names)

    for name, reg in PROTOCOLS.items():
        if reg.lazy:
            members = family(name)
            if members not in families:
                families[members] = Family(members, build, protocols, holder)
            protocols[name] = LazySupport(name, families[members])
    return protocols


def _sockets(listener: Any) -> list[socket.socket]:
    """The listening sockets under `listener`; none for a listener without (a hand-off)."""
    # A TLS listener exists only once its module has run (with a `tls:` config).
    tls = sys.modules.get("sofamesh.transport.tls_listener")
    if tls is not None and isinstance(listener, tls.TlsListener):
        listener = listener.inner
    found = []
    for leaf in leaves(listener):
        try:
            found.append(leaf.extra(anyio.abc.SocketAttribute.raw_socket))
        except anyio.TypedAttributeLookupError:
            return []
    return found


async def _first_readable(sockets: list[socket.socket]) -> None:
    """Return once any of `sockets` has a connection waiting."""
    if len(sockets) == 1:
        await anyio.wait_readable(sockets[0])
        return
    async with anyio.create_task_group() as tg:
        for sock in sockets:
            tg.start_soon(_readable_then_cancel, sock, tg.cancel_scope)


async def _readable_then_cancel(sock: socket.socket, scope: anyio.CancelScope) -> None:
    await anyio.wait_readable(sock)
    scope.cancel()
