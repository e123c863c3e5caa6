"""The rules document: every governance rule as frozen data, validated with every problem's path.

One YAML/JSON document (schema and an example per rule in docs/configuration.md,
"Rules document") is parsed by `parse_rules` with `config.structure`, so an
invalid document is rejected whole, with one `ConfigError` listing each problem
as ``rate_limits[2].count: ...``. Each rule class mirrors the state machine
config it becomes (`BreakerRule.config() -> BreakerConfig`, ...): building that
config in ``__attrs_post_init__`` makes the state machine's own validation
report at the rule's path. Cross-rule checks (duplicates) run afterwards.

Rules are values: equal rules compare and hash equal, which is how a reload
recognises the rules that did not change and keeps their state
(`filters/state.py`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import attrs

from sofamesh.config.structure import ConfigError, structure
from sofamesh.governance.enforcement_rules import (
    AuthSection,
    BreakerRule,
    FallbackRule,
    FaultRule,
    HotParamRule,
    RateLimitRule,
    ResourceLimitRule,
)
from sofamesh.governance.routing_rules import (
    Balancing,
    Route,
)


@attrs.frozen(kw_only=True)
class RulesDocument:
    version: str = ""  # shown in /config_dump; empty = a hash of the content
    routes: tuple[Route, ...] = ()
    load_balancing: tuple[Balancing, ...] = ()
    breakers: tuple[BreakerRule, ...] = ()
    rate_limits: tuple[RateLimitRule, ...] = ()
    hot_params: tuple[HotParamRule, ...] = ()
    faults: tuple[FaultRule, ...] = ()
    auth: AuthSection = attrs.field(factory=AuthSection)
    fallbacks: tuple[FallbackRule, ...] = ()
    resource_limits: tuple[ResourceLimitRule, ...] = ()


EMPTY = RulesDocument(version="empty")


def parse_rules(data: Any) -> RulesDocument:
    """Validate plain data into a `RulesDocument`; `ConfigError` lists every problem by path."""
    if data is None:
        data = {}
    doc = structure(RulesDocument, data)
    problems = list(_cross_checks(doc))
    if problems:
        raise ConfigError(problems)
    if not doc.version:
        doc = attrs.evolve(doc, version=content_version(data))
    return doc


def content_version(data: Any) -> str:
    """A short, stable hash of the document's content (the version when none is given)."""
    import hashlib  # on first use: it loads OpenSSL's digests (0.7 MB an idle sidecar lacks)

    text = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:12]


def rule_name(kind: str, index: int, given: str) -> str:
    """A rule's display name: its own, else its place in the document (``rate_limits[2]``)."""
    return given or f"{kind}[{index}]"


def _cross_checks(doc: RulesDocument) -> Iterator[str]:
    yield from _unique("routes", [(r.name,) if r.name else None for r in doc.routes], "name")
    yield from _unique(
        "breakers", [(r.service, r.method) for r in doc.breakers], "service and method"
    )
    yield from _unique("load_balancing", [(b.service,) for b in doc.load_balancing], "service")
    yield from _unique(
        "fallbacks",
        [(f.service, f.method, f.direction) for f in doc.fallbacks],
        "service, method and direction",
    )
    yield from _unique("resource_limits", [(r.service,) for r in doc.resource_limits], "service")
    routes = {r.name for r in doc.routes if r.name}
    for i, f in enumerate(doc.faults):
        if f.route and f.route not in routes:
            yield f"faults[{i}].route: no route is named {f.route!r}"
    names: dict[str, str] = {}
    for kind, rules in _named(doc):
        for i, r in enumerate(rules):
            if r.name and names.setdefault(r.name, f"{kind}[{i}]") != f"{kind}[{i}]":
                yield f"{kind}[{i}].name: {r.name!r} is already used by {names[r.name]}"


def _named(doc: RulesDocument) -> Iterator[tuple[str, tuple[Any, ...]]]:
    yield "breakers", doc.breakers
    yield "rate_limits", doc.rate_limits
    yield "hot_params", doc.hot_params
    yield "faults", doc.faults
    yield "fallbacks", doc.fallbacks
    yield "resource_limits", doc.resource_limits


def _unique(kind: str, keys: list[tuple[str, ...] | None], what: str) -> Iterator[str]:
    seen: dict[tuple[str, ...], int] = {}
    for i, key in enumerate(keys):
        if key is None:
            continue
        if key in seen:
            yield f"{kind}[{i}]: same {what} as {kind}[{seen[key]}]: {', '.join(map(repr, key))}"
        seen.setdefault(key, i)
