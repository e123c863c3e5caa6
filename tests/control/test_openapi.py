"""`/api/openapi.json` describes exactly the routes the dispatcher serves."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from tests.control.harness import running_control

pytestmark = pytest.mark.anyio


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [
            r for v in node.values() for r in _refs(v)
        ]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


async def test_openapi_matches_the_route_table(tmp_path: Path, monkeypatch: Any) -> None:
    async with running_control(tmp_path, monkeypatch) as (cp, admin):
        spec = await admin.as_(None).ok("GET", "/api/openapi.json")
        assert spec["openapi"].startswith("3.1")
        served = {(r.method.lower(), r.path) for r in cp.routes}
        documented = {(m, p) for p, ops in spec["paths"].items() for m in ops}
        assert documented == served
        for route in cp.routes:
            op = spec["paths"][route.path][route.method.lower()]
            assert op["x-sofamesh-role"] == route.need
            assert ("security" in op) == (route.need != "public")
            params = {p["name"] for p in op.get("parameters", [])}
            assert params == set(re.findall(r"\{(\w+)\}", route.path))
            assert ("requestBody" in op) == (route.body is not None)
        schemas = spec["components"]["schemas"]
        for ref in _refs(spec):
            assert ref.removeprefix("#/components/schemas/") in schemas, ref
        ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
        assert len(ids) == len(set(ids))
