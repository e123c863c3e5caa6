"""Answering an `admission.k8s.io/v1` AdmissionReview: the injection as a JSON Patch.

`answer(body, settings, now)` is the whole webhook without the network: an
HTTP status and the body to send.

- A request that is not an AdmissionReview (not JSON, another kind or
  version, no `request.uid`, no object) is answered 400 with the reason: the API
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

from sofamesh.deploy.inject import inject, injectable
from sofamesh.deploy.patch import diff
from sofamesh.deploy.settings import InjectError, InjectSettings

log = logging.getLogger("sofamesh.injector")

API_VERSION = "admission.k8s.io/v1"


class BadReview(ValueError):
    """A body that is not an AdmissionReview request the webhook can answer."""


def answer(
    body: bytes, settings: InjectSettings, now: datetime.datetime
) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body answering `body`."""
    try:
        request = parse(body)
    except BadReview as exc:
        log.warning("injector: refused a request: %s", exc)
        return 400, {"error": str(exc)}
    return 200, review_response(request, settings, now)


def parse(body: bytes) -> dict[str, Any]:
    """The `request` of an AdmissionReview, checked enough to answer it."""
    try:
        review = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadReview(f"not JSON: {exc}") from None
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
    return request


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
