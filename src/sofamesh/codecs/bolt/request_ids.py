"""Request-id multiplexing: the table of calls in flight on one connection.

Bolt (and Dubbo) put many calls on one connection and match each response to its
request by id; responses may come back in any order, and a heartbeat ack can overtake
an earlier response (seen with sofa-bolt-node). `RequestIds` hands out ids, remembers
what is waiting on each, and gives the waiter back when the response arrives.

Ids are positive 31-bit ints (1 .. 2**31-1), so they are valid in Java's signed `int`
and never collide with the negative ids a wrapped Java counter produces. The counter
wraps back to 1 and skips ids still in flight, so a call that has been pending for a
full cycle is never answered with another call's response.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")

MAX_REQUEST_ID = 2**31 - 1


class RequestIdsExhaustedError(RuntimeError):
    """Every id in the range is in flight."""


class RequestIds(Generic[T]):
    """Allocates request ids and maps each id in flight to a value (a waiter, say)."""

    __slots__ = ("_max_id", "_next", "_pending", "pending")

    def __init__(self, *, first: int = 1, max_id: int = MAX_REQUEST_ID) -> None:
        if not 1 <= first <= max_id:
            raise ValueError(f"need 1 <= first ({first}) <= max_id ({max_id})")
        self._next = first
        self._max_id = max_id
        self._pending: dict[int, T] = {}
        # The same dict, for a read loop that takes each response's waiter out with its
        # `pop(request_id, None)` in C: read it, or pop from it, never add to it.
        self.pending = self._pending

    def allocate(self, value: T) -> int:
        """Return a fresh id not in flight and remember `value` under it."""
        pending = self._pending
        if len(pending) >= self._max_id:
            raise RequestIdsExhaustedError(f"all {self._max_id} request ids are in flight")
        rid = self._next
        while rid in pending:  # at most len(pending) steps, since one id is free
            rid = rid + 1 if rid < self._max_id else 1
        pending[rid] = value
        self._next = rid + 1 if rid < self._max_id else 1
        return rid

    def pop(self, request_id: int) -> T | None:
        """Forget `request_id` and return its value (None if unknown: late or foreign)."""
        return self._pending.pop(request_id, None)

    def get(self, request_id: int) -> T | None:
        return self._pending.get(request_id)

    def drain(self) -> list[tuple[int, T]]:
        """Forget every id in flight and return them, e.g. to fail them on disconnect."""
        items = list(self._pending.items())
        self._pending.clear()
        return items

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._pending

    def __len__(self) -> int:
        return len(self._pending)
