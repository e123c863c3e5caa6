"""What an etcd registry follows: every watched service through one watch over the services
prefix, a governance document through a watch of its key; each read once, then watched from
the revision after, resumed after a break without missing or replaying a change (a part of
`EtcdRegistry`, etcd.py).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, aclosing
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.abc

from sofamesh.endpoint import Endpoint
from sofamesh.registry.base import RegistryError, Shared, Snapshot, follow_shared, watching
from sofamesh.registry.etcd_client import EtcdClient
from sofamesh.registry.etcd_keys import MARKS, EtcdKeys, ServiceParts, Touched, decode_entry
from sofamesh.registry.etcd_wire import Event, EventType, KeyValue
from sofamesh.registry.resilient import Backoff

log = logging.getLogger("sofamesh.registry.etcd")

T = TypeVar("T")


class Watches:
    """The reading side of `EtcdRegistry`."""

    keys: EtcdKeys
    lease_ttl: int
    backoff: Backoff
    watch_breaks: int
    _rand: Callable[[], float]
    _group: anyio.abc.TaskGroup | None
    _watched: dict[str, Shared]  # the services followed, by name
    _services: dict[str, dict[bytes, Endpoint | str]] | None  # as last read
    _follower: anyio.Event | None  # set once the one watch has started

    if TYPE_CHECKING:

        @property
        def client(self) -> EtcdClient: ...

    def watch(self, service: str) -> AbstractAsyncContextManager[AsyncIterator[Snapshot]]:
        return watching(self._follow(service))

    async def _follow(self, service: str) -> AsyncGenerator[Snapshot]:
        """The service's snapshots from the registry's one watch over every service."""
        shared = self._watched.get(service)
        if shared is None:
            shared = self._watched[service] = Shared()
            if self._services is not None:  # the one watch has read: the snapshot is known
                shared.publish(self._snapshot(self._services.get(service, {})))
            if self._follower is None:
                self._follower = anyio.Event()
                self._tg().start_soon(self._follow_services)
        async with aclosing(follow_shared(self._watched, service, shared)) as snapshots:
            async for snap in snapshots:
                yield snap

    async def _follow_services(self) -> None:
        """Follow the whole services prefix in one watch; hand each watched service whose
        keys changed its part."""
        touched, parts = Touched(), ServiceParts(self.keys)
        follow: AsyncGenerator[dict[bytes, Endpoint | str]]
        follow = self.follow_keys(self.keys.services, decode_entry, touched=touched)
        async with aclosing(follow) as states:
            async for state in states:
                changed = parts.update(state, touched)
                self._services = parts.by_service
                for name, shared in list(self._watched.items()):
                    if changed is None or name in changed:
                        shared.publish(self._snapshot(parts.by_service.get(name, {})))

    def _snapshot(self, entries: dict[bytes, Endpoint | str]) -> Snapshot:
        return Snapshot(
            (v for v in entries.values() if isinstance(v, Endpoint)),
            withdrawn=(v for v in entries.values() if isinstance(v, str)),
            lease=float(self.lease_ttl),
        )

    def _tg(self) -> anyio.abc.TaskGroup:
        if self._group is None:
            raise RuntimeError("EtcdRegistry used outside its 'async with' block")
        return self._group

    async def follow_keys(
        self,
        key: bytes,
        decode: Callable[[bytes], T | None],
        *,
        prefix: bool = True,
        touched: Touched | None = None,
    ) -> AsyncGenerator[dict[bytes, T]]:
        """The decoded keys under `key` (or `key` alone), after the first read and after
        each watch reply. Yields the same dict each time: read it before the next step.
        `touched` gathers what each step changed (its reader empties it)."""
        state: dict[bytes, T] = {}
        next_rev, attempt = 0, 0
        while True:
            try:
                if next_rev == 0:
                    next_rev = await self._read(key, decode, state, prefix=prefix)
                    if touched is not None:
                        touched.everything = True
                    yield state
                async with self.client.watch(key, next_rev, prefix=prefix) as stream:
                    async for resp in stream:
                        attempt = 0
                        if resp.compact_revision:
                            log.info("etcd compacted revision %d away; reading again", next_rev)
                            next_rev = 0
                            break
                        if resp.canceled:
                            raise RegistryError(f"etcd cancelled the watch: {resp.cancel_reason}")
                        if resp.events:
                            next_rev = _apply(resp.events, decode, state, touched)
                            yield state
            except RegistryError as e:
                self.watch_breaks += 1
                self.client.rotate()
                delay = self.backoff.delay(attempt, self._rand)
                attempt += 1
                log.info(
                    "etcd watch of %r broke (%s); resuming from revision %d in %.2fs",
                    key,
                    e,
                    next_rev,
                    delay,
                )
                await anyio.sleep(delay)

    async def _read(
        self,
        key: bytes,
        decode: Callable[[bytes], T | None],
        state: dict[bytes, T],
        *,
        prefix: bool,
    ) -> int:
        if prefix:
            revision, kvs = await self.client.get_prefix(key)
        else:
            revision, kv = await self.client.get(key)
            kvs = [kv] if kv else []
        state.clear()
        for kv in kvs:
            if (value := decode(kv.value)) is not None:
                state[kv.key] = value
        return revision + 1

    async def list_services(self) -> list[str]:
        _rev, kvs = await self.client.get_prefix(self.keys.services, keys_only=True)
        listed = (kv.key for kv in kvs if b"/" + MARKS not in kv.key)
        return sorted({s for key in listed if (s := self.keys.service_of(key)) is not None})

    def watch_document(self, name: str) -> AbstractAsyncContextManager[AsyncIterator[str | None]]:
        return watching(self._follow_document(name))

    async def _follow_document(self, name: str) -> AsyncGenerator[str | None]:
        key, last, first = self.keys.rule(name), None, True
        async with aclosing(self.follow_keys(key, _decode_text, prefix=False)) as states:
            async for state in states:
                text = state.get(key)
                if first or text != last:
                    first, last = False, text
                    yield text


def _apply(
    events: Sequence[Event],
    decode: Callable[[bytes], T | None],
    state: dict[bytes, T],
    touched: Touched | None,
) -> int:
    """Apply watch events to `state` (noting their keys in `touched`); the revision to
    resume from after them."""
    kv: KeyValue | None = None
    for event in events:
        kv = event.kv
        if touched is not None:
            touched.keys.add(kv.key)
        value = decode(kv.value) if event.type is EventType.PUT else None
        if value is None:
            state.pop(kv.key, None)
        else:
            state[kv.key] = value
    assert kv is not None
    return kv.mod_revision + 1


def _decode_text(value: bytes) -> str:
    return value.decode("utf-8", "replace")
