"""kazoo, driven from anyio: calls go in without blocking, callbacks come back to the loop.

kazoo runs two kinds of threads: a connection thread (socket I/O, session
state) and callback workers (results and watch events). This bridge keeps the
event loop clear of both:

- calls use kazoo's `*_async` methods, which only queue a request and return
  an `IAsyncResult`; `call()` links a callback to it and awaits an anyio
  event, bounded by `timeout`, so a cancelled or timed-out caller never leaves
  a thread waiting;
- every kazoo callback (a result, a watch, a state change) reaches the loop
  through an inbox: a thread-safe queue plus one byte written to a socket
  pair, the way kazoo wakes its own connection thread. A kazoo thread never
  waits for the loop (`anyio.from_thread.run_sync` would make it wait one
  loop turn per callback, which serialises pipelined requests); the bridge's
  `run()` task waits for the socket with `anyio.wait_readable`, which works on
  asyncio and trio alike, and runs what the queue holds, in order;
- `aclose()` stops kazoo (closing the session, so our ephemeral nodes go at
  once) and joins its threads in a worker thread, so none outlive the bridge.

Requests are only sent while connected: while kazoo reconnects, `call()` fails
fast with RegistryError instead of queueing requests that would run later.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
from kazoo.client import KazooClient, KazooState, TransactionRequest
from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError
from kazoo.retry import KazooRetry

from sofamesh.registry.base import RegistryError
from sofamesh.registry.resilient import Backoff

log = logging.getLogger("sofamesh.registry.zookeeper")

# What the registry handles itself; every other kazoo failure becomes RegistryError.
EXPECTED = (NoNodeError, NodeExistsError)


class KazooBridge:
    """One kazoo client and session, used from one anyio event loop."""

    def __init__(
        self,
        hosts: str,
        *,
        session_timeout: float,
        timeout: float,
        backoff: Backoff,
        on_connected: Callable[[bool], None],
    ) -> None:
        self.hosts = hosts
        self.timeout = timeout
        self.session_id: int | None = None
        self._on_connected = on_connected
        # kazoo's reconnect loop: retry forever, capped like our own backoff.
        retry = KazooRetry(
            max_tries=-1,
            delay=backoff.initial,
            backoff=backoff.multiplier,
            max_jitter=backoff.jitter,
            max_delay=backoff.maximum,
        )
        self.client = KazooClient(
            hosts=hosts,
            timeout=session_timeout,
            connection_retry=retry,
            command_retry=KazooRetry(max_tries=0),
        )
        self._inbox: queue.SimpleQueue[tuple[Callable[..., object], tuple[object, ...]]] = (
            queue.SimpleQueue()
        )
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.connected: anyio.Event | None = None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Connect (in kazoo's threads: returns at once, the server may be down), then
        deliver kazoo's callbacks to the loop until cancelled. Run it in a task group."""
        self.connected = anyio.Event()
        self.client.add_listener(self._on_state)
        self.client.start_async()
        task_status.started()
        while True:
            await anyio.wait_readable(self._wake_r)
            with contextlib.suppress(BlockingIOError):
                self._wake_r.recv(65536)
            self._deliver()

    def _deliver(self) -> None:
        while True:
            try:
                fn, args = self._inbox.get_nowait()
            except queue.Empty:
                return
            fn(*args)

    async def aclose(self) -> None:
        def stop() -> None:
            self.client.stop()  # closes the session: the server drops our ephemeral nodes
            self.client.close()  # joins kazoo's threads

        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(stop)
        self._wake_r.close()
        self._wake_w.close()

    # -- from kazoo's threads to the loop ----------------------------------------------------

    def post(self, fn: Callable[..., object], *args: object) -> None:
        """Have the loop run `fn(*args)` soon (callable from any thread; never blocks)."""
        self._inbox.put((fn, args))
        # A full buffer means a wake-up is pending anyway; a closed socket, nobody listens.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def watcher(self, event: anyio.Event) -> Callable[[Any], None]:
        """A kazoo watch callback that sets `event` in the loop."""
        return lambda _watched: self.post(event.set)

    def _on_state(self, state: str) -> None:  # kazoo's connection thread; must not block long
        self.post(self._state_changed, state, self.client.client_id)

    def _state_changed(self, state: str, client_id: tuple[int, bytes] | None) -> None:
        assert self.connected is not None
        if state == KazooState.CONNECTED:
            new_session = client_id is not None and client_id[0] != self.session_id
            if client_id is not None:
                self.session_id = client_id[0]
            self.connected.set()
            self._on_connected(new_session)
            return
        if self.connected.is_set():
            self.connected = anyio.Event()
        if state == KazooState.LOST:
            self.session_id = None  # expired (or closed): every ephemeral node of ours is gone

    # -- from the loop to kazoo --------------------------------------------------------------

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """`client.<method>_async(*args, **kwargs)`, awaited. Raises NoNodeError or
        NodeExistsError as kazoo does, RegistryError for everything else."""
        return await self.request(
            f"{method} {args[:1]}", lambda: getattr(self.client, f"{method}_async")(*args, **kwargs)
        )

    async def commit(self, transaction: TransactionRequest) -> list[Any]:
        """Commit a multi-operation transaction: kazoo's list of results, one per
        operation (an exception in place of each result if the transaction failed)."""
        results: list[Any] = await self.request("transaction", transaction.commit_async)
        return results

    async def request(self, label: str, start: Callable[[], Any]) -> Any:
        """Start one of kazoo's asynchronous requests with `start()` and await its result."""
        await self.wait_connected()
        done = anyio.Event()
        try:
            result = start()
        except KazooException as e:
            raise RegistryError(f"zookeeper {label}: {e!r}") from None
        result.rawlink(lambda _r: self.post(done.set))
        with anyio.move_on_after(self.timeout):
            await done.wait()
        if not done.is_set():
            raise RegistryError(f"zookeeper {label}: no answer in {self.timeout:g}s")
        try:
            return result.get_nowait()
        except EXPECTED:
            raise
        except Exception as e:  # kazoo's results carry any exception its threads met
            raise RegistryError(f"zookeeper {label}: {e!r}") from None

    async def wait_connected(self) -> None:
        assert self.connected is not None, "KazooBridge used before run()"
        with anyio.move_on_after(self.timeout):
            await self.connected.wait()
        if not self.connected.is_set():
            raise RegistryError(f"zookeeper {self.hosts}: not connected")
