"""Passing listening sockets between processes: messages and file descriptors on a Unix socket.

What a process upgrade needs from the transport, without any policy of its own:

- `Channel`: length-prefixed JSON messages over a Unix stream socket, and file
  descriptors sent with a message (SCM_RIGHTS). Reads are exact, never ahead:
  ancillary data travels with the first byte it was sent with, and a read that
  took that byte without `recvmsg` would drop the descriptors.
- `peer_uid`: who connected (SO_PEERCRED), so a server can refuse other users.
- `listening_sockets` and `listener_from_sockets`: the raw listening sockets
  under an anyio listener, and an anyio listener over sockets received from
  another process (the asyncio fast path of `streams.accept` reads the same
  raw socket, so inherited listeners cost nothing per connection).

A passed socket is the same kernel socket in both processes: its accept queue is
shared, so connections queued before the hand-over are accepted by one process
or the other, and none is refused. Closing one process's descriptor leaves the
socket listening in the other.

Wire layout of one message (both directions):

    +----------------+-----------------------------+--------------------+
    | length: u32 BE | JSON object (length bytes)  | [1 byte + fds]     |
    +----------------+-----------------------------+--------------------+

The trailing byte is present only when the object has `"fds": N` with N > 0;
the N descriptors ride on it. The JSON is compact (no spaces), so a document measured
as compact JSON elsewhere (`control.max_document_bytes`) takes the same bytes here.

Each channel has its own cap on a message, `max_message`: an upgrade's messages list
listeners and stay under `MAX_MESSAGE`; a sidecar's link to its workers carries rules
documents and registry snapshots and sets a larger one (sidecar/worker_link.py). A
message over the cap is refused before anything is sent (`MessageError`): the
channel stays usable, and the receiving end never sees it.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

import anyio
import anyio.abc
from anyio.streams.stapled import MultiListener

MAX_MESSAGE = 1 << 20  # bytes; a hand-over message lists listeners, never more
MAX_FDS = 250  # what one SCM_RIGHTS message may carry on Linux (SCM_MAX_FD is 253)
_LENGTH = struct.Struct(">I")
_UCRED = struct.Struct("3i")  # pid, uid, gid


class HandoverError(Exception):
    """The other process broke the hand-over protocol, or went away mid-message."""


class MessageError(ValueError):
    """A message that cannot be sent (over the channel's cap, or not JSON); nothing was sent."""


def frame(message: dict[str, Any], max_message: int, fds: int = 0) -> bytes:
    """`message` as it goes on the wire (length and JSON), or MessageError over `max_message`.

    Made once, a frame can go to several channels with the same cap (`Channel.send_frame`).
    """
    try:
        body = json.dumps({**message, "fds": fds}, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise MessageError(f"not a JSON message: {exc}") from None
    if len(body) > max_message:
        raise MessageError(f"a message of {len(body)} bytes is over the cap of {max_message}")
    return _LENGTH.pack(len(body)) + body


class Channel:
    """JSON messages, with file descriptors attached, over a connected Unix stream socket."""

    def __init__(self, stream: anyio.abc.UNIXSocketStream, max_message: int = MAX_MESSAGE) -> None:
        self.stream = stream
        self.max_message = max_message  # bytes of JSON, each way

    async def send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        """Send `message` (MessageError, nothing sent, if over `max_message`) and `fds`."""
        fds = fds or []
        if len(fds) > MAX_FDS:
            raise HandoverError(f"{len(fds)} descriptors are more than one message carries")
        data = frame(message, self.max_message, len(fds))
        await self.send_frame(data)
        if fds:
            try:
                await self.stream.send_fds(b"F", fds)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                raise HandoverError("the other process closed the connection") from None

    async def send_frame(self, data: bytes) -> None:
        """Send a message `frame` made (with no descriptors)."""
        try:
            await self.stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise HandoverError("the other process closed the connection") from None

    async def receive(self) -> tuple[dict[str, Any], list[socket.socket]]:
        """The next message and the sockets sent with it (the caller owns them)."""
        (length,) = _LENGTH.unpack(await self._exactly(_LENGTH.size))
        if length > self.max_message:
            raise HandoverError(f"a message of {length} bytes is over {self.max_message}")
        try:
            message = json.loads(await self._exactly(length))
        except ValueError as exc:
            raise HandoverError(f"not a JSON message: {exc}") from None
        if not isinstance(message, dict):
            raise HandoverError("a message must be a JSON object")
        count = message.get("fds", 0)
        if not isinstance(count, int) or not 0 <= count <= MAX_FDS:
            raise HandoverError(f"bad descriptor count {count!r}")
        if not count:
            return message, []
        _, fds = await self.stream.receive_fds(1, count)
        sockets = [socket.socket(fileno=fd) for fd in fds]
        if len(sockets) != count:
            for s in sockets:
                s.close()
            raise HandoverError(f"expected {count} descriptors, received {len(sockets)}")
        return message, sockets

    async def _exactly(self, n: int) -> bytes:
        data = bytearray()  # a document of megabytes arrives in many reads
        while len(data) < n:
            try:
                data += await self.stream.receive(n - len(data))
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                raise HandoverError("the other process closed the connection") from None
        return bytes(data)

    async def aclose(self) -> None:
        await anyio.aclose_forcefully(self.stream)


def peer_uid(stream: anyio.abc.UNIXSocketStream) -> int:
    """The user id of the process at the other end of `stream` (SO_PEERCRED)."""
    raw: socket.socket = stream.extra(anyio.abc.SocketAttribute.raw_socket)
    creds = raw.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return int(_UCRED.unpack(creds)[1])


def listening_sockets(listener: anyio.abc.Listener[Any]) -> list[socket.socket]:
    """The raw sockets under `listener` (each leaf of a MultiListener, a TLS wrapper's inner)."""
    if isinstance(listener, MultiListener):
        return [s for child in listener.listeners for s in listening_sockets(child)]
    raw = listener.extra(anyio.abc.SocketAttribute.raw_socket, None)
    return [raw] if isinstance(raw, socket.socket) else []


async def listener_from_sockets(
    sockets: list[socket.socket],
) -> MultiListener[anyio.abc.SocketStream]:
    """An anyio listener serving already-bound, listening TCP sockets (it takes them over)."""
    listeners = []
    for sock in sockets:
        if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
            raise HandoverError(f"not a TCP listening socket: {sock!r}")
        listeners.append(await anyio.abc.SocketListener.from_socket(sock))
    return MultiListener(listeners)
