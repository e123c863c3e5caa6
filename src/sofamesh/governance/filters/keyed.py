"""State that outlives a reload, and rules found by service and method.

`Carry` is how a reload keeps state: every rule's live state (a breaker, a
limiter, counters) is a *leaf* keyed by the rule's value. Building a new
generation asks the carry for each rule's leaf; an equal rule in the previous
generation hands over its leaf, anything else starts fresh. So a breaker for
service A keeps its state when only a rule for B changed, and a changed rule
starts clean -- it is a different rule.

`ScopeIndex` finds the leaves of a call by resource, as Sentinel's Dubbo
adapter enters both the interface and the method resource: the service-wide
rules (method ``""``, one leaf the whole service shares) first, then the
method's -- the explicit rules for that method (``"name"``) if any, else the
each-method rules (``"*"``, one leaf per method, made on first use). Lookups
are cached in a dict that is cleared when full: one dict probe per call.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Generic, TypeVar

from sofamesh.governance.rule_fields import EACH_METHOD

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")

Leaves = dict[tuple[Hashable, int], object]


class Carry:
    """Hands each rule its leaf: the previous generation's for an equal rule, else a new one."""

    def __init__(self, previous: Mapping[tuple[Hashable, int], object] | None = None) -> None:
        self._previous = previous or {}
        self.leaves: Leaves = {}

    def take(self, rule: Hashable, build: Callable[[], T]) -> T:
        n = 0
        while (rule, n) in self.leaves:  # equal rules twice in one document: one leaf each
            n += 1
        key = (rule, n)
        leaf = self._previous.get(key)
        if leaf is None:
            leaf = build()
        self.leaves[key] = leaf
        return leaf  # type: ignore[return-value]


class ScopeIndex(Generic[T, R]):
    """Leaves by (service, method); `lookup` resolves and caches what applies to one call."""

    __slots__ = ("_each", "_max", "_method", "_resolve", "_service", "cache", "services", "whole")

    def __init__(
        self,
        entries: Iterable[tuple[str, str, T]],
        resolve: Callable[[T, str], R],
        maxsize: int = 10_000,
    ) -> None:
        self._resolve = resolve
        self._service: dict[str, list[T]] = {}
        self._method: dict[tuple[str, str], list[T]] = {}
        self._each: dict[str, list[T]] = {}
        for given, method, leaf in entries:
            for service in aliases(given):
                self._add(service, method, leaf)
        self.services = frozenset([*self._service, *self._each, *(s for s, _ in self._method)])
        # What applies to a service whose every rule is service-wide, resolved for method "":
        # for a `resolve` that answers a service-wide leaf alike for every method (the
        # breakers'), `lookup`'s answer found by the name alone, with no key tuple per call.
        by_method = {s for s, _ in self._method}
        self.whole: dict[str, tuple[R, ...]] = {
            s: tuple(resolve(leaf, "") for leaf in leaves)
            for s, leaves in self._service.items()
            if s not in self._each and s not in by_method
        }
        # What applies to (service, method): a filter may read a hit itself, without `lookup`.
        self.cache: dict[tuple[str, str], tuple[R, ...]] = {}
        self._max = maxsize

    def _add(self, service: str, method: str, leaf: T) -> None:
        if not method:
            self._service.setdefault(service, []).append(leaf)
        elif method == EACH_METHOD:
            self._each.setdefault(service, []).append(leaf)
        else:
            self._method.setdefault((service, method), []).append(leaf)

    def __bool__(self) -> bool:
        return bool(self.services)

    def lookup(self, service: str, method: str) -> tuple[R, ...]:
        """What applies to a call, service-wide first; () when nothing does."""
        if service not in self.services:
            return ()
        key = (service, method)
        found = self.cache.get(key)
        if found is None:
            found = self._find(service, method)
            if len(self.cache) >= self._max:
                self.cache.clear()
            self.cache[key] = found
        return found

    def _find(self, service: str, method: str) -> tuple[R, ...]:
        leaves = list(self._service.get(service, ()))
        leaves += self._method.get((service, method)) or self._each.get(service) or ()
        return tuple(self._resolve(leaf, method) for leaf in leaves)

    def leaves(self) -> list[T]:
        """Every leaf once, in document order within each scope."""
        out = [leaf for ls in self._service.values() for leaf in ls]
        out += [leaf for ls in self._method.values() for leaf in ls]
        out += [leaf for ls in self._each.values() for leaf in ls]
        return list({id(leaf): leaf for leaf in out}.values())


def aliases(service: str) -> tuple[str, ...]:
    """The names a call may use for `service`: as written, and lowercased -- HTTP clients
    lowercase the Host header that names the service, and governance runs before the
    balancing step restores the registered spelling."""
    lower = service.lower()
    return (service,) if lower == service else (service, lower)


class BoundedDict(dict[K, T]):
    """A dict that forgets everything when full: a cheap bound for per-call caches."""

    def __init__(self, maxsize: int) -> None:
        super().__init__()
        self.maxsize = maxsize

    def put(self, key: K, value: T) -> T:
        if len(self) >= self.maxsize:
            self.clear()
        self[key] = value
        return value
