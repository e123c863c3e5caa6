"""A fake Kubernetes API that serves only discovery, and `kubectl create --dry-run=client`.

kubectl maps each kind to its resource through the API server's discovery even
in a client-side dry run, so the tests serve discovery themselves (on 127.0.0.1,
the project's HTTP/1.1 server): `/api`, `/apis` and the resource lists of the
groups used. `--validate=false` because schema validation fetches the server's
OpenAPI documents, which this fake does not have; the `kubernetes` models check
the schema instead (`workloads.as_model`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
import yaml

from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.protocols.http.server import ConnInfo, Http1Server

RESOURCES = {
    "v1": [
        ("pods", "Pod"),
        ("services", "Service"),
        ("configmaps", "ConfigMap"),
        ("secrets", "Secret"),
        ("serviceaccounts", "ServiceAccount"),
        ("persistentvolumeclaims", "PersistentVolumeClaim"),
        ("namespaces", "Namespace"),
    ],
    "apps/v1": [("deployments", "Deployment"), ("statefulsets", "StatefulSet")],
    "batch/v1": [("cronjobs", "CronJob"), ("jobs", "Job")],
    "admissionregistration.k8s.io/v1": [
        ("mutatingwebhookconfigurations", "MutatingWebhookConfiguration")
    ],
}
CLUSTER_SCOPED = {"Namespace", "MutatingWebhookConfiguration"}


def _resource_list(group_version: str) -> dict[str, Any]:
    resources = [
        {
            "name": n,
            "singularName": "",
            "namespaced": k not in CLUSTER_SCOPED,
            "kind": k,
            "verbs": ["create"],
        }
        for n, k in RESOURCES[group_version]
    ]
    return {"kind": "APIResourceList", "groupVersion": group_version, "resources": resources}


def _group(name: str) -> dict[str, Any]:
    version = {"groupVersion": f"{name}/v1", "version": "v1"}
    return {"name": name, "versions": [version], "preferredVersion": version}


DISCOVERY: dict[str, Any] = {
    "/version": {"major": "1", "minor": "30", "gitVersion": "v1.30.0"},
    "/api": {"kind": "APIVersions", "versions": ["v1"]},
    "/apis": {
        "kind": "APIGroupList",
        "groups": [_group(g) for g in ("apps", "batch", "admissionregistration.k8s.io")],
    },
    "/api/v1": _resource_list("v1"),
    "/apis/apps/v1": _resource_list("apps/v1"),
    "/apis/batch/v1": _resource_list("batch/v1"),
    "/apis/admissionregistration.k8s.io/v1": _resource_list("admissionregistration.k8s.io/v1"),
}


async def discovery(request: HttpRequest, _info: ConnInfo) -> HttpResponse:
    found = DISCOVERY.get(request.target.split("?")[0])
    body = json.dumps(found or {}).encode()
    return HttpResponse(200 if found else 404, [(b"content-type", b"application/json")], body)


@pytest.fixture
async def kubeconfig(tmp_path: Path) -> AsyncIterator[Path]:
    server = Http1Server(discovery)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "nobody", "user": {}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "nobody"}}],
        "current-context": "fake",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve, listener)
        yield path
        await server.drain()


async def kubectl_create(kubeconfig: Path, manifest: Path) -> tuple[int, str]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is missing: scripts/setup.sh installs it"
    argv = [kubectl, "create", "--dry-run=client", "--validate=false", "-o", "name"]
    argv += ["--kubeconfig", str(kubeconfig), "--cache-dir", str(manifest.parent / "cache")]
    proc = await anyio.run_process([*argv, "-f", str(manifest)], check=False)
    return proc.returncode, (proc.stdout + proc.stderr).decode()
