"""Received bytes not yet decoded: a queue of chunks, appended without copying.

Why not one growing bytearray: appending 64 KiB socket reads to it reallocates and
moves the whole buffer again and again, and slicing a field out copies it once more.
Here a chunk is queued as it arrived and a field is copied out of the queue exactly
once (`take`), or not at all when it is a whole chunk. Chunks under 16 KiB are merged
in a bytearray before they are queued, so a peer sending one byte at a time costs a
byte of memory per byte, not a Python object per byte.
"""

from __future__ import annotations

from collections import deque

_COALESCE = 16 * 1024
_EMPTY = b""


class ReceiveBuffer:
    """A FIFO of bytes: `append` chunks, then `peek`, `take` or `skip` from the front."""

    __slots__ = ("_chunks", "_pos", "_tail", "size")

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._pos = 0  # offset of the first pending byte in _chunks[0]
        self._tail = bytearray()  # small chunks after _chunks, merged
        self.size = 0
        """Bytes queued (read-only for callers)."""

    def __len__(self) -> int:
        return self.size

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Queue `data` (copied unless it is `bytes`, which is immutable)."""
        size = len(data)
        if size < _COALESCE and self.size:
            self._tail += data
            if len(self._tail) >= _COALESCE:
                self._flush()
        elif size:
            self._flush()
            self._chunks.append(data if type(data) is bytes else bytes(data))
        self.size += size

    def clear(self) -> None:
        self._chunks.clear()
        self._pos = self.size = 0
        self._tail = bytearray()

    def first(self) -> tuple[bytes, int]:
        """The first queued chunk and the offset of the first pending byte in it."""
        if not self._chunks:
            self._flush()
            if not self._chunks:
                return _EMPTY, 0
        return self._chunks[0], self._pos

    def peek(self, n: int) -> bytes:
        """A copy of the first `n` pending bytes (fewer if fewer are queued)."""
        buf, pos = self.first()
        if len(buf) - pos >= n or len(buf) - pos >= self.size:
            return buf[pos : pos + n]
        self._flush()
        parts = []
        for chunk in self._chunks:
            part = chunk[pos : pos + n]
            parts.append(part)
            n -= len(part)
            pos = 0
            if n <= 0:
                break
        return _EMPTY.join(parts)

    def take(self, n: int) -> bytes:
        """Remove the first `n` bytes (n <= len(self)) and return them, copied once."""
        buf, pos = self.first()
        if len(buf) - pos > n:  # inside the first chunk
            self._pos += n
            self.size -= n
            return buf[pos : pos + n]
        parts: list[bytes | memoryview] = []
        self._consume(n, parts)
        if len(parts) == 1 and type(parts[0]) is bytes:
            return parts[0]  # a whole chunk: no copy at all
        return _EMPTY.join(parts)

    def skip(self, n: int) -> None:
        """Remove the first `n` bytes (n <= len(self))."""
        buf, pos = self.first()
        avail = len(buf) - pos
        if avail > n:
            self._pos += n
            self.size -= n
        elif avail == n and n:  # exactly the rest of the first chunk: drop it
            self._chunks.popleft()
            self._pos = 0
            self.size -= n
        else:
            self._consume(n, None)

    def _consume(self, n: int, parts: list[bytes | memoryview] | None) -> None:
        self.size -= n
        pos = self._pos
        while n:
            if not self._chunks:
                self._flush()
            chunk = self._chunks[0]
            avail = len(chunk) - pos
            if avail > n:
                if parts is not None:
                    parts.append(memoryview(chunk)[pos : pos + n])
                self._pos = pos + n
                return
            if parts is not None:
                parts.append(memoryview(chunk)[pos:] if pos else chunk)
            self._chunks.popleft()
            n -= avail
            pos = 0
        self._pos = pos

    def _flush(self) -> None:
        if self._tail:
            self._chunks.append(bytes(self._tail))
            self._tail = bytearray()
