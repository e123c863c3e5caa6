"""Injecting the sidecar into every pod template of a Kubernetes object, exactly once.

`inject(obj, settings, now)` returns a new object (the argument is not touched):
the same object when its kind has no pod template, when it opts out
(`sofamesh.io/inject: "false"`), or when it is injected already (it carries
`sofamesh.io/status`), so injecting an injected object changes nothing.
"""

from __future__ import annotations

import copy
import datetime
import json
from typing import Any

from sofamesh._version import __version__
from sofamesh.deploy.settings import STATUS, InjectError, InjectSettings, opted_out
from sofamesh.deploy.template import (
    INIT,
    SIDECAR,
    Obj,
    init_container,
    sidecar_container,
    volumes,
)

# Where each kind keeps its pod template ("" for a bare Pod: the object is the pod).
TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


def rfc3339(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def injectable(obj: Any) -> bool:
    """Whether `obj` is a kind with a pod template."""
    return isinstance(obj, dict) and obj.get("kind") in TEMPLATE_PATHS


def inject(obj: Obj, settings: InjectSettings, now: datetime.datetime) -> Obj:
    """`obj` with the sidecar injected into its pod template (see the module's doc)."""
    if not injectable(obj):
        return obj
    pod = _pod_template(obj)
    meta = pod.get("metadata") or {}
    annotations = _annotations(obj, meta)
    if STATUS in annotations or opted_out(annotations):
        return obj
    result = copy.deepcopy(obj)
    pod = _pod_template(result)
    meta = pod.setdefault("metadata", {})
    spec = pod.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("containers"), list):
        raise InjectError(f"{_describe(obj)}: the pod template has no spec.containers")
    s = settings.for_pod(annotations)
    _inject_pod(meta, spec, s, _app_name(obj, meta, s), rfc3339(now))
    return result


def _inject_pod(meta: Obj, spec: Obj, s: InjectSettings, app: str, injected_at: str) -> None:
    added_volumes = volumes(s)
    _refuse_clashes(spec, added_volumes)
    ours = [sidecar_container(s, app, injected_at)]
    if s.interception == "iptables":
        ours.insert(0, init_container(s, _declared_ports(spec)))
    # Ours first: the app's own init containers then run with the mesh in place.
    spec["initContainers"] = ours + list(spec.get("initContainers") or [])
    spec["volumes"] = list(spec.get("volumes") or []) + added_volumes
    status = {
        "version": __version__,
        "initContainers": [c["name"] for c in ours],
        "volumes": [v["name"] for v in added_volumes],
    }
    annotations = meta.setdefault("annotations", {})
    annotations[STATUS] = json.dumps(status, separators=(",", ":"))


def _pod_template(obj: Obj) -> Obj:
    node: Any = obj
    for key in TEMPLATE_PATHS[obj["kind"]]:
        node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            raise InjectError(f"{_describe(obj)}: no {'.'.join(TEMPLATE_PATHS[obj['kind']])}")
    if not isinstance(node, dict):
        raise InjectError(f"{_describe(obj)}: the pod template is not a mapping")
    return node


def _annotations(obj: Obj, pod_meta: Obj) -> dict[str, str]:
    """The workload's annotations with its pod template's over them."""
    outer = (obj.get("metadata") or {}).get("annotations") or {}
    inner = pod_meta.get("annotations") or {} if pod_meta is not obj.get("metadata") else {}
    return {**outer, **inner}


def _app_name(obj: Obj, pod_meta: Obj, s: InjectSettings) -> str:
    labels = pod_meta.get("labels") or {}
    meta = obj.get("metadata") or {}
    # A pod made by a ReplicaSet reaches the webhook with only `generateName` ("orders-7c9f-").
    name = meta.get("name") or str(meta.get("generateName") or "").rstrip("-")
    app = s.app or labels.get("app.kubernetes.io/name") or labels.get("app") or name
    if not app:
        raise InjectError(f"{_describe(obj)}: no app name (set the sofamesh.io/app annotation)")
    return str(app)


def _declared_ports(spec: Obj) -> list[int]:
    ports = {
        int(p["containerPort"])
        for c in spec["containers"]
        for p in c.get("ports") or []
        if p.get("protocol", "TCP") == "TCP" and "containerPort" in p
    }
    return sorted(ports)


def _refuse_clashes(spec: Obj, added_volumes: list[Obj]) -> None:
    containers = [*(spec.get("initContainers") or []), *spec["containers"]]
    taken = {c.get("name") for c in containers} & {SIDECAR, INIT}
    taken |= {v.get("name") for v in spec.get("volumes") or []} & {v["name"] for v in added_volumes}
    if taken:
        raise InjectError(f"the pod already has {sorted(taken)} (names the injection uses)")


def _describe(obj: Obj) -> str:
    name = (obj.get("metadata") or {}).get("name") or "(no name)"
    return f"{obj.get('kind')} {name}"
