"""Which rule instances apply to a call: resources keyed by service and method.

A rule names a service and, optionally, a method:

- ``method=""``: one instance for the whole service (every method shares it),
  like a Sentinel resource named after a Dubbo interface;
- ``method="*"`` (`EACH_METHOD`): one instance *per method*, created on first
  use and kept in a bounded LRU cache -- a method evicted from it starts over
  with fresh state;
- ``method="name"``: one instance for that method only, like a Sentinel
  resource named ``interface:method(...)``.

As with Sentinel's Dubbo adapter, which enters both the interface and the
method resource, a call is checked against its service-wide instance and then
its method instance (the explicit rule when there is one, else the per-method
one): `lookup` returns them in that order. Rules are immutable; a reload builds
a new `ScopedRules` (and so starts rule state afresh).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

import cachetools

EACH_METHOD = "*"

C = TypeVar("C")
T = TypeVar("T")


class ScopedRules(Generic[C, T]):
    """Maps (service, method) to the instances built from the rules that apply."""

    def __init__(
        self,
        rules: Iterable[tuple[str, str, C]],
        build: Callable[[C], T],
        maxsize: int = 10_000,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._build = build
        self._service: dict[str, T] = {}
        self._method: dict[tuple[str, str], T] = {}
        self._each: dict[str, C] = {}
        for service, method, config in rules:
            self._add(service, method, config)
        self._cache: cachetools.LRUCache[tuple[str, str], tuple[T, ...]] = cachetools.LRUCache(
            maxsize
        )

    def _add(self, service: str, method: str, config: C) -> None:
        if not method:
            duplicate = service in self._service
        elif method == EACH_METHOD:
            duplicate = service in self._each
        else:
            duplicate = (service, method) in self._method
        if duplicate:
            raise ValueError(f"two rules for service {service!r} method {method!r}")
        if not method:
            self._service[service] = self._build(config)
        elif method == EACH_METHOD:
            self._each[service] = config
        else:
            self._method[(service, method)] = self._build(config)

    def lookup(self, service: str, method: str) -> tuple[T, ...]:
        """The instances for one call, service-wide first; () when no rule applies."""
        key = (service, method)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._resolve(service, method)
        return found

    def _resolve(self, service: str, method: str) -> tuple[T, ...]:
        out: list[T] = []
        if service in self._service:
            out.append(self._service[service])
        explicit = self._method.get((service, method))
        if explicit is not None:
            out.append(explicit)
        elif service in self._each:
            out.append(self._build(self._each[service]))
        return tuple(out)

    def instances(self) -> Iterator[tuple[str, str, T]]:
        """Every live instance as (service, method, instance); method "" = service-wide."""
        for service, inst in self._service.items():
            yield service, "", inst
        for (service, method), inst in self._method.items():
            yield service, method, inst
        for (service, method), found in list(self._cache.items()):
            if service in self._each and (service, method) not in self._method and found:
                yield service, method, found[-1]
