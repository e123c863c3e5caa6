"""One family for every rule's decisions: `sofamesh_rule_decisions_total{kind, rule, decision}`.

Each rule kind counts in its own words (a rate limit `passed`, a breaker
`admitted`, auth `allowed` and `denied`); a dashboard that asks "what did rule X
decide" reads this family instead: `allowed`, `rejected`, and
`shadow_would_reject` (a rule in shadow mode, or not enforced for this request,
that would have rejected). Built from the governance snapshot when scraped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sofamesh.stats import Family

# The snapshot's fields for each decision, first found wins.
DECISIONS = {
    "allowed": ("allowed", "passed", "admitted"),
    "rejected": ("rejected", "denied"),
    "shadow_would_reject": ("shadowed",),
}


def rule_families(snapshot: dict[str, Any]) -> Iterator[Family]:
    totals: dict[tuple[str, str, str], float] = {}
    for kind, rows in snapshot.get("rules", {}).items():
        for row in rows:
            rule = row.get("rule")
            if not isinstance(rule, str):
                continue
            for decision, fields in DECISIONS.items():
                value = next((row[f] for f in fields if isinstance(row.get(f), int)), None)
                if value is not None:
                    key = (kind, rule, decision)
                    totals[key] = totals.get(key, 0) + value
    samples = [
        ("_total", {"kind": k, "rule": r, "decision": d}, v)
        for (k, r, d), v in sorted(totals.items())
    ]
    yield Family(
        "sofamesh_rule_decisions", "counter", "What each rule decided, by rule name.", samples
    )
