"""The protocol-neutral call model: an `Invocation` goes in, a `Result` comes out.

Every codec converts its frames to and from these two types, so nothing above
`codecs/` sees a wire format. Filters read typed fields (service, method,
caller, deadline, headers) instead of a grab-bag context.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from typing import Any, Protocol

from sofamesh.endpoint import Endpoint

_new = object.__new__

# Well-known header names the mesh itself reads and writes (lowercase).
CALLER_HEADER = "x-sofamesh-caller"
SERVICE_HEADER = "x-sofamesh-service"
TIMEOUT_HEADER = "x-sofamesh-timeout-ms"


class Headers:
    """An ordered multi-map of lowercase `str` names to `str` values.

    Names are lowercased on the way in, so every protocol's headers (HTTP
    fields, Bolt's header map, gRPC metadata) can be matched the same way.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        # Every Result and most Invocations start empty: no comprehension (a frame) for them.
        self._items: list[tuple[str, str]] = [(k.lower(), v) for k, v in items] if items else []

    @classmethod
    def from_lower(cls, items: list[tuple[str, str]]) -> Headers:
        """Adopt a list whose names are already lowercase (codec fast path)."""
        h = _new(cls)  # `cls.__new__` would look the slot wrapper up on every call
        h._items = items
        return h

    def get(self, name: str, default: str | None = None) -> str | None:
        for k, v in self._items:
            if k == name:
                return v
        return default

    def carries_any(self, names: AbstractSet[str]) -> bool:
        """Whether any of `names` (lowercase) is among these headers."""
        return any(k in names for k, _ in self._items)

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self._items if k == name]

    def __contains__(self, name: object) -> bool:
        return any(k == name for k, _ in self._items)

    def set(self, name: str, value: str) -> None:
        """Replace every value of `name` with one value."""
        name = name.lower()
        self._items = [(k, v) for k, v in self._items if k != name]
        self._items.append((name, value))

    def add(self, name: str, value: str) -> None:
        self._items.append((name.lower(), value))

    def remove(self, name: str) -> None:
        self._items = [(k, v) for k, v in self._items if k != name]

    def items(self) -> list[tuple[str, str]]:
        return self._items

    def copy(self) -> Headers:
        return Headers.from_lower(list(self._items))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class Status(enum.Enum):
    """The neutral outcome of a call; each codec maps it to its own codes.

    Hashed by identity (members are singletons), in C: statistics count
    results by status on every call, and Enum's own `__hash__` is Python code.

    `OK` means the provider answered (an HTTP 404 is still `OK` at this level:
    the protocol code says more). The others are failures that the mesh or
    the transport observed, and drive retries, breakers and outlier ejection.
    """

    OK = "ok"
    APP_ERROR = "app_error"  # the provider answered with a server error (HTTP 5xx, Bolt status 2)
    NO_ENDPOINT = "no_endpoint"  # discovery found nobody healthy to call
    CONNECT_FAILED = "connect_failed"  # the request never reached the provider: safe to retry
    UPSTREAM_RESET = "upstream_reset"  # connection lost mid-call: the provider may have seen it
    TIMEOUT = "timeout"  # the deadline passed
    BAD_REQUEST = "bad_request"  # the caller sent something the mesh cannot carry
    RATE_LIMITED = "rate_limited"
    CIRCUIT_OPEN = "circuit_open"
    OVERLOADED = "overloaded"  # a connection/pending/in-flight limit was hit
    UNAUTHORIZED = "unauthorized"
    UNAVAILABLE = "unavailable"  # draining, or a health check failed on purpose
    INTERNAL = "internal"  # a bug or unexpected condition inside the mesh

    __hash__ = object.__hash__

    @property
    def is_failure(self) -> bool:
        """Counts against the endpoint (outlier ejection, breakers)."""
        return self in _ENDPOINT_FAILURES


# `Result.ok` reads it through a module name: `Status.OK` is `EnumType.__getattr__`'s slow
# path on Python 3.11 (about 400 instructions a read).
_OK = Status.OK
_ENDPOINT_FAILURES = frozenset(
    {Status.APP_ERROR, Status.CONNECT_FAILED, Status.UPSTREAM_RESET, Status.TIMEOUT}
)


class RouteChoice(Protocol):
    """Governance's decision for one call (`sofamesh.governance.filters.select.Target`).

    `pick` replaces the cluster's own choice in the balancing step: route
    subsets, tag routing, consistent hashing, zones, slow start.
    """

    name: str

    def pick(self, cluster: Any, inv: Invocation, now: float) -> Endpoint | None: ...


class Invocation:
    """One call, as every filter sees it.

    `deadline` is absolute on the mesh's `Clock` (`time.monotonic()` in
    production, a fake clock in tests); `None` means no deadline.
    `payload` is the protocol's message (an `HttpRequest`, Bolt body bytes, ...),
    which only the codec at either end interprets.

    A plain `__slots__` class with its own `__init__`: one is made for every call on
    every path, and attrs' generated `__init__` with its factories cost a third more.
    No `__getattr__` (a lazy field through it would take every attribute read off
    CPython's specialised path); a positional call skips the keyword dict a class
    call builds, about 2,700 instructions for a codec's keywords.
    """

    __slots__ = (
        "attempt",
        "caller",
        "deadline",
        "endpoint",
        "headers",
        "idempotent",
        "method",
        "now",
        "payload",
        "peer",
        "protocol",
        "route",
        "service",
        "tried",
    )  # fmt: skip
    __match_args__ = ("protocol", "service", "method")

    protocol: str
    service: str
    method: str
    headers: Headers
    caller: str
    deadline: float | None
    # The caller's identity verified by mutual TLS (its SPIFFE ID), "" on a plaintext hop:
    # then `caller` is the app that ID names, whatever the request declared.
    peer: str
    payload: Any
    # Safe to send twice (HTTP GET, HEAD, PUT, ...): a reset before any response may be retried.
    idempotent: bool
    # Per-attempt state, written by the balancing and retry filters. `tried` holds the
    # `Endpoint.key` of each endpoint a try went to (a str hashes in C, an attrs class not).
    endpoint: Endpoint | None
    tried: set[str]
    attempt: int
    # Set by governance routing; None: the cluster picks as usual.
    route: RouteChoice | None
    # A reading of the mesh clock taken in this call with nothing awaited since, or None:
    # the stats filter takes one as the call starts, the filters below it read it instead
    # of the clock, and whatever may wait or pass the call on again clears it
    # (`sofamesh.chain` says who). Not a constructor argument: it belongs to one pass.
    now: float | None

    def __init__(
        self,
        protocol: str,
        service: str,
        method: str,
        headers: Headers | None = None,
        caller: str = "",
        deadline: float | None = None,
        peer: str = "",
        payload: Any = None,
        idempotent: bool = False,
        endpoint: Endpoint | None = None,
        tried: set[str] | None = None,
        attempt: int = 0,
        route: RouteChoice | None = None,
    ) -> None:
        self.protocol = protocol
        self.service = service
        self.method = method
        self.headers = Headers() if headers is None else headers
        self.caller = caller
        self.deadline = deadline
        self.peer = peer
        self.payload = payload
        self.idempotent = idempotent
        self.endpoint = endpoint
        self.tried = set() if tried is None else tried
        self.attempt = attempt
        self.route = route
        self.now = None

    def __repr__(self) -> str:
        return _repr(self, _INVOCATION_FIELDS)


class Result:
    """The outcome of one call: a neutral status plus the protocol's own code.

    `code` is protocol-specific (HTTP status, Bolt response status, gRPC status);
    `detail` is a human-readable reason for mesh-generated failures, and ends up
    in the response body or status message.

    `payload` is the protocol's own response when a provider answered (an
    `HttpResponse`, a Bolt frame, a gRPC `StreamReply`), None for a mesh-made
    failure, and the body as `bytes` for an answer the mesh makes itself (a
    rule's direct response, a fallback, an injected abort): then `headers` are
    the answer's headers and `code` its protocol code, 0 meaning the status's
    usual one, and the caller's protocol renders it on its listener.

    A plain `__slots__` class, as `Invocation` is; `headers` not given are made on
    their first read (a provider's answer carries its own in `payload`, and most
    results' are never read).
    """

    __slots__ = ("_headers", "code", "detail", "endpoint", "payload", "status")
    __match_args__ = ("status", "code")

    status: Status
    code: int
    payload: Any
    detail: str
    endpoint: Endpoint | None

    def __init__(
        self,
        status: Status,
        code: int = 0,
        headers: Headers | None = None,
        payload: Any = None,
        detail: str = "",
        endpoint: Endpoint | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self._headers = headers
        self.payload = payload
        self.detail = detail
        self.endpoint = endpoint

    @property
    def headers(self) -> Headers:
        headers = self._headers
        if headers is None:
            headers = self._headers = Headers()
        return headers

    @headers.setter
    def headers(self, headers: Headers) -> None:
        self._headers = headers

    def __repr__(self) -> str:
        return _repr(self, _RESULT_FIELDS)

    @property
    def ok(self) -> bool:
        return self.status is _OK

    @classmethod
    def failure(cls, status: Status, detail: str, endpoint: Endpoint | None = None) -> Result:
        return cls(status, 0, None, None, detail, endpoint)

    def copy(self) -> Result:
        """A result like this one, with a copy of its headers (to change them apart)."""
        return Result(
            self.status, self.code, self.headers.copy(), self.payload, self.detail, self.endpoint
        )


# In the constructor's order.
_INVOCATION_FIELDS = (
    "protocol", "service", "method", "headers", "caller", "deadline", "peer", "payload",
    "idempotent", "endpoint", "tried", "attempt", "route",
)  # fmt: skip
_RESULT_FIELDS = ("status", "code", "headers", "payload", "detail", "endpoint")


def _repr(obj: Invocation | Result, names: tuple[str, ...]) -> str:
    fields = ", ".join(f"{name}={getattr(obj, name)!r}" for name in names)
    return f"{type(obj).__name__}({fields})"
