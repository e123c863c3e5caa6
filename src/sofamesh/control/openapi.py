"""The API as an OpenAPI 3.1 document, built from the route table (so it cannot drift).

`GET /api/openapi.json` serves it; a test checks that every route is in it and
nothing else is. Request bodies are described by the schemas below; answers are
JSON objects or arrays (`Error` for every failure).
"""

from __future__ import annotations

from typing import Any

from sofamesh._version import __version__
from sofamesh.control.api import Route

_STR = {"type": "string"}
_BOOL = {"type": "boolean"}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": _obj(["error"], error=_STR, problems={"type": "array", "items": _STR}),
    "Login": _obj(["user", "password"], user=_STR, password=_STR),
    "Workspace": _obj(["name"], name=_STR),
    "User": _obj(["name"], name=_STR, password=_STR, role=_STR, workspace=_STR),
    "Member": _obj(["user", "role"], user=_STR, role={"enum": ["owner", "editor", "viewer"]}),
    "Token": _obj(
        ["role"],
        role={"enum": ["owner", "editor", "viewer", "dataplane"]},
        name=_STR,
        apps={"type": "array", "items": _STR},
    ),
    "Csr": _obj(["csr"], csr=_STR),
    "RulesApply": _obj(
        ["document"],
        document={"oneOf": [{"type": "object"}, _STR]},
        message=_STR,
        shadow=_BOOL,
    ),
    "RulesRollback": _obj(["version"], version=_STR, message=_STR),
    "Report": _obj(
        ["id", "app"],
        id=_STR,
        app=_STR,
        mode={"enum": ["sdk", "sidecar"]},
        version=_STR,
        host=_STR,
        pid={"type": "integer"},
        health={"enum": ["serving", "draining", "failed"]},
        listeners={"type": "array"},
        provides={"type": "array", "items": _STR},
        calls={"type": "array", "items": _STR},
        pod={"type": "object"},
        started_at={"type": "number"},
        injected_at={"type": ["number", "null"]},
        rules_version={"type": ["string", "null"]},
        rules_error={"type": ["object", "null"]},
        traffic={"type": "array"},
        decisions={"type": "array"},
        tls={"type": ["object", "null"]},
    ),
    "Ack": _obj(["version"], version=_STR, error={"type": ["string", "null"]}),
    "Action": _obj(["action"], action={"enum": ["fail", "ok", "drain"]}),
}


def _operation(route: Route) -> dict[str, Any]:
    params = [
        {"name": part[1:-1], "in": "path", "required": True, "schema": _STR}
        for part in route.parts
        if part.startswith("{")
    ]
    op: dict[str, Any] = {
        "summary": route.summary,
        "operationId": f"{route.method.lower()}_{route.handler.__name__}",
        "x-sofamesh-role": route.need,
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {}}},
            "default": {
                "description": "an error",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    }
    if params:
        op["parameters"] = params
    if route.need != "public":
        op["security"] = [{"bearer": []}]
    if route.body:
        op["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{route.body}"}}
            },
        }
    return op


def openapi(routes: list[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "sofamesh control plane", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
