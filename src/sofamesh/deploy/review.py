"""Answering an `admission.k8s.io/v1` AdmissionReview: the injection as a JSON Patch.

`answer(body, settings, now)` is the whole webhook without the network: an
HTTP status and the body to send.

- A request that is not an AdmissionReview (not JSON, nested deeper than
  `max_depth`, another kind or version, no `request.uid`, no object) is answered
  400 with the reason: the API
  server then applies the webhook's `failurePolicy` (the manifests say `Fail`).
- A review of an object the injection refuses (a bad `sofamesh.io/` annotation,
  a pod without containers) is denied (`allowed: false`, code 400, the reason):
  the user asked for something the injection cannot do, and is told so rather
  than getting a pod outside the mesh.
- Anything else is allowed: with a patch when the object was injected, without
  one when it needs none (another operation or kind, opted out, injected already).
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
from typing import Any

from sofamesh.codecs import jsondoc
from sofamesh.deploy.inject import TEMPLATE_PATHS, inject, injectable
from sofamesh.deploy.patch import diff
from sofamesh.deploy.settings import InjectError, InjectSettings

log = logging.getLogger("sofamesh.injector")

API_VERSION = "admission.k8s.io/v1"
# A pod nests about 20 levels deep in its review (managedFields mirror the spec); a deeper
# body is refused before anything walks it.
MAX_DEPTH = 100


class BadReview(ValueError):
    """A body that is not an AdmissionReview request the webhook can answer."""


def answer(
    body: bytes, settings: InjectSettings, now: datetime.datetime, max_depth: int = MAX_DEPTH
) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body answering `body`."""
    try:
        request = parse(body, max_depth)
    except BadReview as exc:
        log.warning("injector: refused a request: %s", exc)
        return 400, {"error": str(exc)}
    return 200, review_response(request, settings, now)


def parse(body: bytes, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """The `request` of an AdmissionReview, checked enough to answer it."""
    try:
        review = jsondoc.loads(body, max_bytes=len(body), max_depth=max_depth)
    except jsondoc.JsonDocError as exc:
        raise BadReview(str(exc)) from None
    if not isinstance(review, dict) or review.get("kind") != "AdmissionReview":
        raise BadReview("not an AdmissionReview")
    if review.get("apiVersion") != API_VERSION:
        raise BadReview(f"apiVersion {review.get('apiVersion')!r}: only {API_VERSION} is served")
    request = review.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("uid"), str):
        raise BadReview("the review has no request.uid")
    if request.get("operation", "CREATE") == "CREATE" and not isinstance(
        request.get("object"), dict
    ):
        raise BadReview("a CREATE review without request.object")
    if isinstance(request.get("object"), dict):
        check_object(request["object"])
    return request


def check_object(obj: dict[str, Any]) -> None:
    """Refuse an object whose fields the injection reads have types Kubernetes never sends.

    The API server sends only objects of its own schema, so a map where a list belongs is
    not a review from it: the request is refused (400), not the pod denied.
    """
    kind = obj.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise BadReview("request.object.kind must be a string")
    _check_meta(obj, "metadata")
    if kind not in TEMPLATE_PATHS:
        return
    node: Any = obj
    path: list[str] = []
    for key in TEMPLATE_PATHS[kind]:
        node, path = node.get(key), [*path, key]
        if node is None:
            return  # the injection says what is missing
        if not isinstance(node, dict):
            raise BadReview(f"{'.'.join(path)} must be a map")
    if node is not obj:
        _check_meta(node, ".".join([*path, "metadata"]))
    spec = node.get("spec")
    if spec is not None:
        _check_spec(spec, ".".join([*path, "spec"]))


def _check_meta(parent: dict[str, Any], where: str) -> None:
    """`parent`'s metadata, if it has the key: a map (not null), its names and maps text."""
    if "metadata" not in parent:
        return
    meta = parent["metadata"]
    if not isinstance(meta, dict):
        raise BadReview(f"{where} must be a map")
    for key in ("name", "generateName", "namespace"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise BadReview(f"{where}.{key} must be a string")
    for key in ("annotations", "labels"):
        if key in meta and not _text_map(meta[key]):  # null too: the injection adds to it
            raise BadReview(f"{where}.{key} must be a map of strings")


def _check_spec(spec: Any, where: str) -> None:
    if not isinstance(spec, dict):
        raise BadReview(f"{where} must be a map")
    for key in ("containers", "initContainers", "volumes"):
        items = spec.get(key)
        if items is not None and not _list_of_maps(items):
            raise BadReview(f"{where}.{key} must be a list of maps")
    containers = [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
    for item in [*containers, *(spec.get("volumes") or [])]:
        if item.get("name") is not None and not isinstance(item["name"], str):
            raise BadReview(f"{where}: a container's or volume's name must be a string")
    for c in containers:
        ports = c.get("ports")
        if ports is not None and not _list_of_maps(ports):
            raise BadReview(f"{where}: a container's ports must be a list of maps")
        for p in ports or []:
            port, proto = p.get("containerPort"), p.get("protocol", "TCP")
            if "containerPort" in p and (type(port) is not int or not 0 < port < 65536):
                raise BadReview(f"{where}: containerPort must be a port number")
            if not isinstance(proto, str):
                raise BadReview(f"{where}: a port's protocol must be a string")


def _text_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _list_of_maps(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) for v in value)


def review_response(
    request: dict[str, Any], settings: InjectSettings, now: datetime.datetime
) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
    obj = request.get("object")
    if request.get("operation", "CREATE") == "CREATE" and injectable(obj):
        assert isinstance(obj, dict)
        try:
            injected = inject(obj, settings, now)
        except InjectError as exc:
            log.warning("injector: denied %s: %s", _name(request), exc)
            response["allowed"] = False
            response["status"] = {"code": 400, "message": f"sofamesh injection: {exc}"}
        else:
            ops = diff(obj, injected)
            if ops:
                response["patchType"] = "JSONPatch"
                response["patch"] = base64.b64encode(json.dumps(ops).encode()).decode("ascii")
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}


def _name(request: dict[str, Any]) -> str:
    obj = request.get("object") or {}
    meta = obj.get("metadata") or {}
    name = meta.get("name") or meta.get("generateName") or "?"
    return f"{obj.get('kind')} {request.get('namespace') or '-'}/{name}"
