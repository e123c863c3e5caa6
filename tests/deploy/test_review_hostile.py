"""AdmissionReviews of any shape: `review.answer` gives 200 or 400, never an exception.

The API server sends only objects of Kubernetes' schema, but whoever reaches the
webhook's port can send anything: each field the injection reads is replaced
by any JSON value, and the answer must still be a review or a clear 400.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.deploy.workloads import NOW, SETTINGS, deployment, pod, rich_spec
from tests.hostile_json import json_values

from sofamesh.deploy.review import answer

VALUES = json_values(text_size=10, max_leaves=6)


def _paths(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value in `node`, the root's children first."""
    children = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else []
    )
    return [p for k, v in children for p in [(*at, k), *_paths(v, (*at, k))]]


OBJECTS = [pod(rich_spec()), deployment(rich_spec())]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(OBJECTS), st.data())
def test_any_field_of_any_type_is_answered(obj: dict[str, Any], data: st.DataObject) -> None:
    obj = copy.deepcopy(obj)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(obj)))
        parent = obj
        for key in path[:-1]:
            parent = parent[key]
        if data.draw(st.booleans()):
            parent[path[-1]] = data.draw(VALUES)
        elif isinstance(parent, dict):
            del parent[path[-1]]
        if not _paths(obj):
            break
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"uid": "u", "operation": "CREATE", "object": obj}}  # fmt: skip
    status, body = answer(json.dumps(review).encode(), SETTINGS, NOW)
    assert status in (200, 400)
    assert status == 400 or body["response"]["uid"] == "u"
    json.dumps(body)


def test_the_nesting_limit_is_explicit() -> None:
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"uid": "u", "object": {"kind": "Pod", "x": [[[[[[]]]]]]}}}  # fmt: skip
    body = json.dumps(review).encode()
    assert answer(body, SETTINGS, NOW, max_depth=9)[0] == 200
    status, doc = answer(body, SETTINGS, NOW, max_depth=8)
    assert status == 400 and "deeper than 8" in doc["error"]
