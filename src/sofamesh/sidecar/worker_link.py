"""The conversation between a sidecar's main process and one of its workers.

One Unix socket pair per worker, made by the main process before it starts the
worker, carries `transport.handover.Channel` messages both ways:

    main                                              worker
    hello {config, index, listeners} + listening fds ---->
                                                <---- ready {pid}
    snapshot {service, endpoints, withdrawn, lease} -->   (a service it watches)
    registrations {items}, rules {data, origin}  ---->    (the local API's, the rules)
                                                <---- watch {service}, unwatch {service}
    ask {id, op: stats|reset|clusters}           ---->
                                                <---- reply {id, ...}
                                                <---- ask {id, op: services}
    reply {id, services}                         ---->
    stop                                         ---->    (drain, then exit 0)

Messages are posted to a queue that one writer task sends, so posting never blocks
the caller (a registry watch, a request's admin call); an `ask` waits for its reply
with a timeout. Either end closing the socket ends the other's `run`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

from sofamesh.endpoint import Endpoint
from sofamesh.registry.base import Snapshot
from sofamesh.transport.handover import Channel, HandoverError

log = logging.getLogger("sofamesh.sidecar.workers")

ASK_TIMEOUT = 5.0  # seconds a worker (or the main process) gets to answer an ask

# A message that is not a reply: answered by returning the reply's fields (asks), or None.
Handle = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


class Link:
    """One end of a main process <-> worker socket pair, once the hello is done."""

    def __init__(self, channel: Channel, handle: Handle, name: str) -> None:
        self.channel = channel
        self.name = name
        self._handle = handle
        self._out, self._queue = anyio.create_memory_object_stream[dict[str, Any]](math.inf)
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[anyio.Event, list[dict[str, Any]]]] = {}

    async def run(self) -> None:
        """Send what is posted and dispatch what arrives, until the other end closes."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._write, tg.cancel_scope)
                try:
                    await self._read(tg)
                except (HandoverError, OSError) as exc:
                    log.debug("%s: link closed: %s", self.name, exc)
                tg.cancel_scope.cancel()
        finally:
            self._out.close()
            await self.channel.aclose()

    def post(self, message: dict[str, Any]) -> None:
        """Queue `message` for the other end (dropped if the link is gone)."""
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._out.send_nowait(message)

    async def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send an ask and wait for its reply; TimeoutError past `ASK_TIMEOUT`."""
        ident = next(self._ids)
        done, answer = anyio.Event(), list[dict[str, Any]]()
        self._waiting[ident] = (done, answer)
        try:
            self.post({"ask": op, "id": ident, **fields})
            with anyio.fail_after(ASK_TIMEOUT):
                await done.wait()
        finally:
            self._waiting.pop(ident, None)
        reply: dict[str, Any] = answer[0]
        return reply

    async def _write(self, scope: anyio.CancelScope) -> None:
        try:
            async for message in self._queue:
                await self.channel.send(message)
        except (HandoverError, OSError) as exc:
            log.debug("%s: cannot send: %s", self.name, exc)
        scope.cancel()

    async def _read(self, tg: anyio.abc.TaskGroup) -> None:
        while True:
            message, stray = await self.channel.receive()
            for sock in stray:  # descriptors come only with the hello
                sock.close()
            if "reply" in message:
                waiting = self._waiting.get(int(message["reply"]))
                if waiting is not None:
                    waiting[1].append(message)
                    waiting[0].set()
            elif "ask" in message:
                tg.start_soon(self._answer, message)
            else:
                await self._handle(message)

    async def _answer(self, message: dict[str, Any]) -> None:
        try:
            reply = await self._handle(message) or {}
        except Exception as exc:  # a bug in one answer must not end the link
            log.exception("%s: answering %s failed", self.name, message.get("ask"))
            reply = {"error": repr(exc)}
        self.post({"reply": message["id"], **reply})


def snapshot_message(service: str, snap: Snapshot) -> dict[str, Any]:
    return {
        "snapshot": service,
        "endpoints": [ep.to_dict() for ep in snap],
        "withdrawn": sorted(snap.withdrawn),
        "lease": snap.lease,
    }


def snapshot_of(message: dict[str, Any]) -> Snapshot:
    return Snapshot(
        (Endpoint.from_dict(e) for e in message["endpoints"]),
        withdrawn=message["withdrawn"],
        lease=float(message["lease"]),
    )
