"""The rules document: validation names every problem by path; rules are values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.hostile_json import json_values

from sofamesh.config import ConfigError
from sofamesh.governance.enforcement_rules import BreakerRule
from sofamesh.governance.filters.state import GovernanceState
from sofamesh.governance.rules import EMPTY, parse_rules

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def problems(data: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_rules(data)
    return info.value.problems


def test_every_problem_is_listed_with_its_path() -> None:
    found = problems(
        {
            "routes": [
                {
                    "service": "",
                    "match": {"method": {"regex": "("}, "headers": [{"name": "x"}]},
                    "split": [{"subset": {"version": "v1"}, "weight": -1}],
                }
            ],
            "breakers": [{"service": "orders", "threshold": 3}],
            "rate_limits": [{"service": "orders", "count": -1, "bogus": 1}, {"service": "orders"}],
            "hot_params": [{"service": "orders", "count": 1}],
            "faults": [{"service": "orders"}],
            "auth": {"inbound": {"default": "maybe"}},
            "fallbacks": [{"service": "orders", "when": ["nope"]}],
            "load_balancing": [
                {
                    "service": "orders",
                    "hash": {"header": "x", "algorithm": "maglev", "table_size": 100},
                }
            ],
        }
    )
    text = "\n".join(found)
    for fragment in [
        "routes[0].service: must name a service",
        "routes[0].match.method: invalid regex '('",
        "routes[0].match.headers[0]: give exactly one of exact, prefix, regex, present",
        "routes[0].split[0].weight:",
        "breakers[0]: threshold must be a ratio within 0..1, got 3",
        "rate_limits[0].bogus: unknown key",
        "rate_limits[0]: 'count' must be >= 0.0",
        "rate_limits[1].count: required",
        "hot_params[0]: give exactly one of header, query",
        "faults[0]: give delay, abort or both",
        "auth.inbound.default: expected one of ['allow', 'deny']",
        "fallbacks[0].when[0]: expected one of",
        "load_balancing[0].hash: table_size must be a prime number, got 100",
    ]:
        assert fragment in text, f"{fragment!r} missing from:\n{text}"


def test_cross_rule_problems() -> None:
    found = problems(
        {
            "routes": [{"name": "r", "service": "a"}, {"name": "r", "service": "b"}],
            "breakers": [{"service": "a"}, {"service": "a", "threshold": 0.9}],
            "rate_limits": [{"name": "x", "service": "a", "count": 1}],
            "hot_params": [{"name": "x", "service": "a", "header": "h", "count": 1}],
            "faults": [{"service": "a", "route": "missing", "abort": {}}],
        }
    )
    text = "\n".join(found)
    assert "routes[1]: same name as routes[0]" in text
    assert "breakers[1]: same service and method as breakers[0]" in text
    assert "hot_params[0].name: 'x' is already used by rate_limits[0]" in text
    assert "faults[0].route: no route is named 'missing'" in text
    dup = problems({"auth": {"inbound": {"rules": [{"service": "a"}, {"service": "a"}]}}})
    assert dup == ["auth.inbound: two auth rules for service 'a' method ''"]


def test_route_action_conflicts() -> None:
    found = problems(
        {
            "routes": [
                {"service": "a", "split": [{"weight": 1}], "tag": {}},
                {"service": "a", "direct_response": {}, "retry": {}},
                {"service": "a", "split": [{"weight": 0}]},
            ]
        }
    )
    assert found == [
        "routes[0]: a route takes split or tag, not both",
        "routes[1]: direct_response excludes split, tag, mirror and retry",
        "routes[2]: split weights must not all be 0",
    ]


def test_not_a_mapping() -> None:
    assert problems([1, 2]) == ["(top level): expected a mapping, got list [1, 2]"]


def test_empty_document_and_version() -> None:
    assert parse_rules(None).routes == ()
    assert parse_rules({"version": "v7"}).version == "v7"
    a, b = parse_rules({"rate_limits": [{"service": "a", "count": 1}]}), parse_rules({})
    assert a.version.startswith("sha256:") and a.version != b.version
    assert EMPTY.version == "empty"


def test_equal_rules_are_equal_values() -> None:
    one = parse_rules({"breakers": [{"service": "a", "enforcement": {"shadow": True}}]})
    two = parse_rules({"breakers": [{"service": "a", "enforcement": {"shadow": True}}]})
    assert one.breakers[0] == two.breakers[0] and hash(one.breakers[0]) == hash(two.breakers[0])
    assert one.breakers[0] != BreakerRule(service="a")


def test_keys_may_use_dashes() -> None:
    doc = parse_rules({"breakers": [{"service": "a", "min-request-count": 9}]})
    assert doc.breakers[0].min_request_count == 9


def _doc_examples() -> list[str]:
    text = DOCS.read_text()
    section = text[text.index("## Rules document") :]
    return re.findall(r"```yaml\n(.*?)```", section, re.S)


def test_every_example_in_the_docs_is_a_valid_rules_document() -> None:
    examples = _doc_examples()
    assert len(examples) >= 8
    for example in examples:
        parse_rules(yaml.safe_load(example))


json_like = json_values(
    text_size=5,
    key_size=8,
    max_leaves=12,
    integers=st.integers(-5, 5),
    floats=st.floats(allow_nan=True),
)
KINDS = ["routes", "breakers", "rate_limits", "hot_params", "faults", "fallbacks", "load_balancing"]
FIELDS = [
    "service",
    "method",
    "count",
    "threshold",
    "split",
    "subset",
    "weight",
    "match",
    "regex",
    "direction",
    "caller",
    "abort",
    "delay",
    "header",
    "retry",
    "attempts",
    "hash",
    "when",
]


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*KINDS, "version", "auth", "bogus"]),
        st.lists(st.dictionaries(st.sampled_from(FIELDS), json_like, max_size=5), max_size=3)
        | json_like,
        max_size=4,
    )
)
def test_any_data_is_either_a_document_or_a_config_error(data: dict[str, object]) -> None:
    """A live push of garbage must be rejected with problems, never crash the watcher."""
    try:
        doc = parse_rules(data)
    except ConfigError as e:
        assert e.problems and all(isinstance(p, str) for p in e.problems)
    else:
        GovernanceState(doc)  # and a valid document always builds
