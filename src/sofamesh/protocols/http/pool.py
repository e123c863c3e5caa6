"""A keep-alive connection pool for HTTP/1.1 clients, bounded per endpoint.

Bookkeeping is synchronous (nothing awaits between reading and updating the
pool's state, so no lock is needed); closing connections happens after it.
Per endpoint (host, port):

- idle connections are a LIFO stack: the most recently used one is reused
  first (warm, least likely to have been closed by the server), and the
  oldest sink to the bottom, where expiry finds them;
- `max_connections_per_endpoint` slots bound the open connections: a
  request holds a slot while it uses a connection, and an idle connection
  is only ever picked up by a slot holder, so open = in use + idle never
  exceeds the limit. Waiters queue FIFO under the call's deadline, and a
  slot given up passes straight to the first of them. The slots are two
  counters and a queue of events rather than an `anyio.Semaphore` (its
  `acquire_nowait` and `release` were two calls a request);
- an idle connection older than `idle_timeout` is closed: when a checkout
  finds it, and by a reaper task, on the injectable clock.

A reused connection that turns out closed before any byte of the response
arrived (the server timed it out while idle) is retried once on a fresh
connection, as httpcore does. Anything that interrupts an exchange, a
caller's cancellation included, closes that connection: its state is unknown.

A response whose body streams (`conn.StreamedBody`) takes its connection out
of the pool when its head arrives: the body closes it once read, and the
slot is free meanwhile (so a slow reader never holds a slot other callers
wait for).
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from types import TracebackType
from typing import Any

import anyio
import attrs

from sofamesh.clock import Clock, MonotonicClock
from sofamesh.codecs.http1 import DEFAULT_LIMITS, Http1Limits, HttpRequest, HttpResponse
from sofamesh.protocols.http.conn import Http1Connection, StaleConnection
from sofamesh.transport.errors import ConnectError, PoolClosedError
from sofamesh.transport.net import Connect, connect

log = logging.getLogger("sofamesh.http1")


def _positive(_inst: Any, attr: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attr.name} must be positive, got {value}")


@attrs.frozen(slots=True)
class Http1PoolConfig:
    """Pool limits; timeouts in seconds. Defaults are httpx's where it has one."""

    limits: Http1Limits = DEFAULT_LIMITS
    connect_timeout: float = attrs.field(default=5.0, validator=_positive)
    max_connections_per_endpoint: int = attrs.field(default=64, validator=_positive)
    idle_timeout: float = attrs.field(default=60.0, validator=_positive)


@attrs.frozen(slots=True)
class PoolStatistics:
    endpoints: int
    open_connections: int
    idle_connections: int
    waiting_requests: int  # queued for a slot of a full endpoint
    requests: int  # completed exchanges
    connections_opened: int
    connect_errors: int
    stale_retries: int
    expired_connections: int


_NONE: list[Http1Connection] = []  # shared, never modified


class _Endpoint:
    """One (host, port)'s connections and slots. `free` slots are taken without waiting;
    while `waiters` is not empty, `free` is 0 (a slot given up goes to the first waiter)."""

    __slots__ = ("free", "idle", "open", "waiters")

    def __init__(self, max_connections: int) -> None:
        self.idle: list[Http1Connection] = []  # oldest first
        self.open = 0
        self.free = max_connections
        self.waiters: deque[anyio.Event] = deque()


class Http1Pool:
    """`async with Http1Pool(...) as pool: response = await pool.send(host, port, request)`."""

    def __init__(
        self,
        limits: Http1Limits = DEFAULT_LIMITS,
        *,
        connect_timeout: float = 5.0,
        max_connections_per_endpoint: int = 64,
        idle_timeout: float = 60.0,
        clock: Clock | None = None,
    ) -> None:
        self.config = Http1PoolConfig(
            limits, connect_timeout, max_connections_per_endpoint, idle_timeout
        )
        self._clock = clock or MonotonicClock()
        self._endpoints: dict[tuple[str, int], _Endpoint] = {}
        self._conns: set[Http1Connection] = set()
        self._closed = False
        self.connect: Connect = connect  # mutual TLS replaces it (`use_tls`)
        self._stack = contextlib.AsyncExitStack()
        self._reaper: anyio.CancelScope | None = None
        self._waiting = 0
        self._requests = self._opened = self._connect_errors = 0
        self._stale_retries = self._expired = 0

    async def __aenter__(self) -> Http1Pool:
        tg = await self._stack.enter_async_context(anyio.create_task_group())
        await tg.start(self._reap_forever)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        # Shielded: when the owner is being cancelled, the close must still run to the end,
        # or the reaper's task group below is left open (and anyio rightly complains).
        with anyio.CancelScope(shield=True):
            await self.aclose()
        return await self._stack.__aexit__(exc_type, exc, tb)

    # -- the request path --------------------------------------------------

    async def send(
        self, host: str, port: int, request: HttpRequest, timeout: float | None = None
    ) -> HttpResponse:
        """Send `request` to `host:port` over a pooled connection; the response.

        Raises ConnectError (never sent: safe to retry elsewhere),
        UpstreamResetError, UpstreamProtocolError or PoolClosedError, and
        TimeoutError once `timeout` seconds (for the whole call: a wait for a
        slot, connecting, the exchange) have passed. The timeout costs no
        cancel scope on the common path (see `streams.time_limit`).
        """
        if self._closed:
            raise PoolClosedError("pool is closed")
        endpoint = self._endpoints.get((host, port)) or self._new_endpoint(host, port)
        # One clock reading serves the deadline, the checkout and the first exchange's limit
        # while nothing is awaited in between (the common case: a free slot, a fresh idle
        # connection); anything awaited reads the clock again.
        now: float | None
        if endpoint.free:  # no coroutine, no scheduling round
            endpoint.free -= 1
            now = self._clock.now()
            deadline = None if timeout is None else now + timeout
        else:
            deadline = await self._acquire(endpoint, timeout)
            now = self._clock.now()
        try:
            conn, expired = self._checkout(endpoint, now)
            if expired:
                await self._close_expired(endpoint, expired)
                now = None
            while True:
                reused = conn is not None
                if conn is None:
                    conn = await self._connect(endpoint, host, port, deadline)
                    now = None
                try:  # the exchange inline: one coroutine frame fewer per request
                    if deadline is None:
                        left = None
                    elif now is None:
                        left = self._left(deadline)
                    else:
                        left, now = deadline - now, None
                        if left <= 0:
                            raise TimeoutError
                    if left is None or conn.limits_itself:
                        response = await conn.request(request, left)
                    else:  # a cancel scope's limit (trio), no frame more for it
                        with conn.time_limit(left):
                            response = await conn.request(request)
                except BaseException as exc:  # cancellation too: the connection's state is unknown
                    await self._discard(endpoint, conn)
                    if not self._retries(exc, reused):
                        raise
                    conn = None
                    continue
                if not self._returned(endpoint, conn, response):
                    await self._discard(endpoint, conn)
                return response
        finally:
            if endpoint.waiters:
                endpoint.waiters.popleft().set()  # the slot passes to the first waiter
            else:
                endpoint.free += 1

    def _retries(self, exc: BaseException, reused: bool) -> bool:
        """After a failed exchange: whether to try again on a fresh connection (a reused one
        was found closed). Raises PoolClosedError if the pool closed meanwhile."""
        if self._closed and not isinstance(exc, anyio.get_cancelled_exc_class()):
            raise PoolClosedError("pool closed during the exchange") from exc
        if reused and isinstance(exc, StaleConnection):
            self._stale_retries += 1
            return True
        return False

    def _new_endpoint(self, host: str, port: int) -> _Endpoint:
        endpoint = self._endpoints[host, port] = _Endpoint(self.config.max_connections_per_endpoint)
        return endpoint

    def _left(self, deadline: float | None) -> float | None:
        """Seconds until `deadline` (None: no deadline); TimeoutError once it has passed."""
        if deadline is None:
            return None
        left = deadline - self._clock.now()
        if left <= 0:
            raise TimeoutError
        return left

    async def _acquire(self, endpoint: _Endpoint, timeout: float | None) -> float | None:
        """Wait for a slot of a full endpoint, FIFO, under the call's timeout; the call's
        deadline (None without a timeout), counted from before the wait."""
        deadline = None if timeout is None else self._clock.now() + timeout
        got = anyio.Event()
        endpoint.waiters.append(got)
        self._waiting += 1
        try:
            with anyio.fail_after(timeout):
                await got.wait()
        except BaseException:
            if got.is_set():  # handed a slot as it gave up (cancelled, timed out): pass it on
                if endpoint.waiters:
                    endpoint.waiters.popleft().set()
                else:
                    endpoint.free += 1
            else:
                endpoint.waiters.remove(got)
            raise
        finally:
            self._waiting -= 1
        return deadline

    def _checkout(
        self, endpoint: _Endpoint, now: float
    ) -> tuple[Http1Connection | None, list[Http1Connection]]:
        """The newest idle connection if still fresh at `now`, and the expired ones to close."""
        idle = endpoint.idle
        if not idle:
            return None, _NONE
        conn = idle.pop()
        if now - conn.idle_since < self.config.idle_timeout:
            return conn, _NONE
        # LIFO: everything below the newest connection is older, so expired too.
        expired = [conn, *idle]
        idle.clear()
        return None, expired

    async def _connect(
        self, endpoint: _Endpoint, host: str, port: int, deadline: float | None
    ) -> Http1Connection:
        limit, left = self.config.connect_timeout, self._left(deadline)
        try:
            stream = await self.connect(host, port, limit if left is None or left > limit else left)
        except ConnectError:
            self._left(deadline)  # out of the call's time rather than the connect's: TimeoutError
            self._connect_errors += 1
            raise
        conn = Http1Connection(stream, self.config.limits, host=host, port=port)
        if self._closed:
            await conn.aclose()
            raise PoolClosedError("pool closed while connecting")
        self._opened += 1
        endpoint.open += 1
        self._conns.add(conn)
        return conn

    def _returned(self, endpoint: _Endpoint, conn: Http1Connection, response: HttpResponse) -> bool:
        """Bookkeeping after an exchange; False if the connection must be closed now."""
        self._requests += 1
        if response.stream is not None:
            # The body owns the connection from here (it closes it at the end): out of the
            # pool's count, so the slot is free while a slow reader takes its time.
            self._conns.discard(conn)
            endpoint.open -= 1
            return True
        if conn.reusable and not self._closed:
            conn.idle_since = self._clock.now()
            endpoint.idle.append(conn)
            return True
        return False

    async def _discard(self, endpoint: _Endpoint, conn: Http1Connection) -> None:
        if conn in self._conns:
            self._conns.discard(conn)
            endpoint.open -= 1
        await conn.aclose()

    async def _close_expired(self, endpoint: _Endpoint, expired: list[Http1Connection]) -> None:
        self._expired += len(expired)
        for conn in expired:
            await self._discard(endpoint, conn)

    # -- housekeeping ------------------------------------------------------

    async def reap_idle(self) -> int:
        """Close idle connections older than `idle_timeout`; how many were closed.

        The reaper task calls this periodically; tests call it after moving
        a fake clock.
        """
        now, timeout, closed = self._clock.now(), self.config.idle_timeout, 0
        for key, endpoint in list(self._endpoints.items()):
            idle = endpoint.idle
            fresh = next((i for i, c in enumerate(idle) if now - c.idle_since < timeout), len(idle))
            expired = idle[:fresh]
            del idle[:fresh]
            await self._close_expired(endpoint, expired)
            closed += len(expired)
            unused = endpoint.free == self.config.max_connections_per_endpoint
            if unused and not endpoint.open:
                del self._endpoints[key]  # nobody holds or awaits a slot: forget it
        return closed

    async def _reap_forever(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        interval = self.config.idle_timeout / 2
        with anyio.CancelScope() as self._reaper:
            task_status.started()
            while True:
                await anyio.sleep(interval)
                try:
                    await self.reap_idle()
                except Exception:  # a reaper bug must not take the pool down
                    log.exception("http1 pool reaper failed")

    async def aclose(self) -> None:
        """Close every connection, in use or idle; later sends raise PoolClosedError."""
        if self._closed:
            return
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
        conns, self._conns = self._conns, set()
        for endpoint in self._endpoints.values():
            endpoint.idle.clear()
        for conn in conns:
            await conn.aclose()

    def connections_by_endpoint(self) -> dict[tuple[str, int], int]:
        """Open connections per (host, port): the admin's `upstream_cx_active`."""
        return {key: e.open for key, e in self._endpoints.items() if e.open}

    def statistics(self) -> PoolStatistics:
        return PoolStatistics(
            endpoints=len(self._endpoints),
            open_connections=len(self._conns),
            idle_connections=sum(len(e.idle) for e in self._endpoints.values()),
            waiting_requests=self._waiting,
            requests=self._requests,
            connections_opened=self._opened,
            connect_errors=self._connect_errors,
            stale_retries=self._stale_retries,
            expired_connections=self._expired,
        )
