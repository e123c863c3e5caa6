"""Workloads of several shapes, and the checks every injected object must pass.

`as_model` parses an object with the `kubernetes` client's models and writes it
back: a field the models do not know (a typo, a field in the wrong place) is
dropped by that round trip, so the comparison catches it; a missing required
field raises.
"""

from __future__ import annotations

import copy
import datetime
import json
from typing import Any

from kubernetes.client import ApiClient

from sofamesh.deploy.settings import InjectSettings

NOW = datetime.datetime(2026, 5, 4, 12, 30, 0, tzinfo=datetime.UTC)
SETTINGS = InjectSettings(image="registry.example/sofamesh:test")


def container(name: str = "app", port: int | None = 8080, **extra: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": f"example/{name}:1", **extra}
    if port is not None:
        c["ports"] = [{"containerPort": port, "protocol": "TCP"}]
    return c


def pod_spec(*containers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"containers": list(containers) or [container()], **extra}


def template(spec: dict[str, Any], **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"labels": {"app": "orders"}}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"metadata": meta, "spec": spec}


def deployment(spec: dict[str, Any] | None = None, **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "orders"}},
            "template": template(spec or pod_spec(), **annotations),
        },
    }


def statefulset(spec: dict[str, Any] | None = None) -> dict[str, Any]:
    obj = deployment(spec)
    obj["kind"] = "StatefulSet"
    obj["metadata"]["name"] = "ledger"
    obj["spec"]["serviceName"] = "ledger"
    obj["spec"]["volumeClaimTemplates"] = [
        {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
    ]
    return obj


def pod(spec: dict[str, Any] | None = None, **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "orders-1", "labels": {"app.kubernetes.io/name": "orders"}}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec or pod_spec()}


def cronjob(spec: dict[str, Any] | None = None) -> dict[str, Any]:
    job_pod = template(spec or pod_spec(container(port=None), restartPolicy="OnFailure"))
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": job_pod}}},
    }


def rich_spec() -> dict[str, Any]:
    """Two containers, the app's own init container, volumes and environment."""
    return pod_spec(
        container(
            "app",
            env=[{"name": "MODE", "value": "prod"}],
            volumeMounts=[{"name": "data", "mountPath": "/data"}],
        ),
        container("metrics", port=9100),
        initContainers=[{"name": "migrate", "image": "example/migrate:1"}],
        volumes=[{"name": "data", "emptyDir": {}}],
        serviceAccountName="orders",
    )


def as_model(obj: dict[str, Any]) -> Any:
    """The `kubernetes` model of `obj`, after checking it writes back as the same object."""
    client = ApiClient()
    model = client.deserialize(json.dumps(obj), f"V1{obj['kind']}", "application/json")
    again = client.sanitize_for_serialization(model)
    assert again == obj, "the kubernetes models do not read this object as written"
    return model


def frozen(obj: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(obj)
