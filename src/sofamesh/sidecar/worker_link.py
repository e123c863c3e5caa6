"""The conversation between a sidecar's main process and one of its workers.

One Unix socket pair per worker, made by the main process before it starts the
worker, carries `transport.handover.Channel` messages both ways:

    main                                              worker
    link {max_message}                           ---->    (the cap of every later message)
    hello {config, index, listeners} + listening fds ---->
    rules {data, origin} (or rules null)         ---->    (in force before it serves)
                                                <---- ready {pid}
    snapshot {service, endpoints, withdrawn, lease} -->   (a service it watches)
    registrations {items}, rules {data, origin}  ---->    (the local API's, the rules)
                                                <---- watch {service}, unwatch {service}
    ask {id, op: stats|reset|clusters|ping}      ---->
                                                <---- reply {id, ...}
                                                <---- ask {id, op: services}
    reply {id, services}                         ---->
    stop                                         ---->    (drain, then exit 0)

Messages are posted to a queue that one writer task sends, so posting never blocks
the caller (a registry watch, a request's admin call); an `ask` waits for its reply
with a timeout. Either end closing the socket ends the other's `run`.

Bounds. A message is at most `link_cap(config)` bytes: the largest rules document the
sidecar accepts (`control.max_document_bytes`, or the 4 MiB default for a rules file
or registry key) plus `ENVELOPE`. Posting a bigger one raises `MessageError` and sends
nothing, so the poster decides (a rules document is refused whole; a registry snapshot
is not forwarded). The queue holds at most `QUEUE_MESSAGES` messages and
`QUEUE_CAPS` x the cap in bytes: an end that stops reading (a hung process) fills it,
and the link then gives up on it (`stalled`, `run` returns) instead of growing.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

from sofamesh.config import MeshConfig
from sofamesh.config.control_urls import DEFAULT_MAX_DOCUMENT_BYTES
from sofamesh.endpoint import Endpoint
from sofamesh.registry.base import Snapshot
from sofamesh.transport.handover import Channel, HandoverError, MessageError, frame

log = logging.getLogger("sofamesh.sidecar.workers")

ASK_TIMEOUT = 5.0  # seconds a worker (or the main process) gets to answer an ask
ENVELOPE = 64 * 1024  # bytes beside a rules document in its message (the origin, the keys)
QUEUE_MESSAGES = 1024  # messages queued for the other end at most
QUEUE_CAPS = 8  # bytes queued for the other end at most, in message caps

# A message that is not a reply: answered by returning the reply's fields (asks), or None.
Handle = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


def link_cap(config: MeshConfig) -> int:
    """The largest message between a main process and its workers, in bytes."""
    largest = DEFAULT_MAX_DOCUMENT_BYTES  # a rules file or registry key (and snapshots)
    if config.control is not None:
        largest = max(largest, config.control.max_document_bytes)
    return largest + ENVELOPE


class Link:
    """One end of a main process <-> worker socket pair, once the hello is done."""

    def __init__(self, channel: Channel, handle: Handle, name: str) -> None:
        self.channel = channel
        self.name = name
        self.stalled: str | None = None  # why this end gave up on the other, if it did
        self.queued_bytes = 0
        self._handle = handle
        self._out, self._queue = anyio.create_memory_object_stream[bytes](QUEUE_MESSAGES)
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[anyio.Event, list[dict[str, Any]]]] = {}
        self._scope = anyio.CancelScope()

    @property
    def max_queued_bytes(self) -> int:
        return QUEUE_CAPS * self.channel.max_message

    async def run(self) -> None:
        """Send what is posted and dispatch what arrives, until the other end closes
        (or stalls: `stalled` says why)."""
        try:
            with self._scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._write, tg.cancel_scope)
                    try:
                        await self._read(tg)
                    except (HandoverError, OSError) as exc:
                        log.debug("%s: link closed: %s", self.name, exc)
                    tg.cancel_scope.cancel()
        finally:
            self._out.close()
            self._queue.close()
            await self.channel.aclose()

    def post(self, message: dict[str, Any]) -> None:
        """Queue `message` for the other end (dropped if the link is gone); MessageError
        (nothing queued) if it is over the link's cap."""
        self.post_frame(frame(message, self.channel.max_message))

    def post_frame(self, data: bytes) -> None:
        """Queue a message `handover.frame` made (for several links: made once)."""
        if self.queued_bytes + len(data) > self.max_queued_bytes:
            self._stall(f"{self.queued_bytes + len(data)} bytes queued")
            return
        try:
            self._out.send_nowait(data)
        except anyio.WouldBlock:
            self._stall(f"{QUEUE_MESSAGES} messages queued")
            return
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return
        self.queued_bytes += len(data)

    def _stall(self, why: str) -> None:
        if self.stalled is None:
            self.stalled = f"the other end reads nothing: {why}"
            log.error("%s: %s", self.name, self.stalled)
        self._out.close()
        self._scope.cancel()

    async def ask(self, op: str, timeout: float = ASK_TIMEOUT, **fields: Any) -> dict[str, Any]:
        """Send an ask and wait for its reply; TimeoutError past `timeout` seconds."""
        ident = next(self._ids)
        done, answer = anyio.Event(), list[dict[str, Any]]()
        self._waiting[ident] = (done, answer)
        try:
            self.post({"ask": op, "id": ident, **fields})
            with anyio.fail_after(timeout):
                await done.wait()
        finally:
            self._waiting.pop(ident, None)
        reply: dict[str, Any] = answer[0]
        return reply

    async def _write(self, scope: anyio.CancelScope) -> None:
        try:
            async for data in self._queue:
                self.queued_bytes -= len(data)
                await self.channel.send_frame(data)
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
        try:
            self.post({"reply": message["id"], **reply})
        except MessageError as exc:  # the asker gets why, not a dead link
            log.error("%s: cannot answer %s: %s", self.name, message.get("ask"), exc)
            self.post({"reply": message["id"], "error": str(exc)})


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
