"""deploy/kubernetes: the certificate script, `kubectl kustomize`, and every object valid."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from tests.deploy.kube_api import kubeconfig, kubectl_create
from tests.deploy.workloads import NOW, SETTINGS, as_model

from sofamesh.config import Address, load_config
from sofamesh.control.config import load_control_config
from sofamesh.deploy.manifests import inject_yaml
from sofamesh.deploy.settings import DNS_PORT, INBOUND_PORT, OUTBOUND_PORT

__all__ = ["kubeconfig"]  # the fixture

SOURCE = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
SERVICE_NAME = "sofamesh-injector.sofamesh-system.svc"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of deploy/kubernetes with its certificate made, built by `kubectl kustomize`."""
    tmp = tmp_path_factory.mktemp("kubernetes")
    copy = tmp / "kubernetes"
    shutil.copytree(SOURCE, copy, ignore=shutil.ignore_patterns("certs"))
    env = {**os.environ, "SOFAMESH": f"{sys.executable} -m sofamesh.cli"}
    subprocess.run(["bash", str(copy / "make-webhook-cert.sh"), "30"], env=env, check=True)
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is missing: scripts/setup.sh installs it"
    out = subprocess.run([kubectl, "kustomize", str(copy)], capture_output=True, check=True)
    (tmp / "built.yaml").write_bytes(out.stdout)
    return tmp / "built.yaml"


@pytest.fixture
def objects(built: Path) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all(built.read_text()))


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def test_the_manifests_build_and_every_object_is_valid(objects: list[dict[str, Any]]) -> None:
    kinds = sorted({o["kind"] for o in objects})
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "MutatingWebhookConfiguration",
        "Namespace",
        "PersistentVolumeClaim",
        "Secret",
        "Service",
        "ServiceAccount",
        "StatefulSet",
    ]
    for obj in objects:
        as_model(obj)
        if obj["kind"] not in ("Namespace", "MutatingWebhookConfiguration"):
            assert obj["metadata"]["namespace"] == "sofamesh-system"


def test_the_webhook_trusts_the_certificate_the_injector_serves(
    objects: list[dict[str, Any]],
) -> None:
    (mwc,) = by_kind(objects, "MutatingWebhookConfiguration")
    (hook,) = mwc["webhooks"]
    assert hook["clientConfig"]["service"]["path"] == "/inject"
    assert hook["failurePolicy"] == "Fail"
    assert hook["namespaceSelector"] == {"matchLabels": {"sofamesh.io/inject": "enabled"}}
    ca = x509.load_pem_x509_certificate(base64.b64decode(hook["clientConfig"]["caBundle"]))
    (secret,) = by_kind(objects, "Secret")
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    public = ca.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert SERVICE_NAME in names.get_values_for_type(x509.DNSName)
    (namespace,) = by_kind(objects, "Namespace")
    assert namespace["metadata"]["labels"]["sofamesh.io/inject"] == "disabled"


@pytest.mark.anyio
async def test_kubectl_accepts_the_manifests(kubeconfig: Path, built: Path) -> None:
    code, out = await kubectl_create(kubeconfig, built)
    assert code == 0, out
    assert "mutatingwebhookconfiguration.admissionregistration.k8s.io/sofamesh-injector" in out


def mesh_config(text: str) -> dict[str, Any]:
    """A ConfigMap's mesh config, its `intercept` section checked against the init rules'
    ports (the whole config is then checked by `load_config`)."""
    mesh: dict[str, Any] = yaml.safe_load(text)
    intercept = mesh["intercept"]
    assert Address.parse(intercept["outbound"]).port == OUTBOUND_PORT
    assert Address.parse(intercept["inbound"]).port == INBOUND_PORT
    assert Address.parse(intercept["dns"]["listen"]).port == DNS_PORT
    return mesh


def test_the_configs_in_the_manifests_are_valid(objects: list[dict[str, Any]]) -> None:
    example = list(yaml.safe_load_all((SOURCE / "example" / "orders.yaml").read_text()))
    maps = {m["metadata"]["name"]: m["data"] for m in by_kind(objects, "ConfigMap")}
    load_control_config(yaml.safe_load(maps["sofamesh-control"]["control.yaml"]))
    load_config({"app": "x", **mesh_config(maps["sofamesh-mesh"]["mesh.yaml"])}, env={})
    mesh = mesh_config(by_kind(example, "ConfigMap")[0]["data"]["mesh.yaml"])
    load_config({"app": "orders", **mesh}, env={"SOFAMESH_CONTROL_TOKEN": "smt_from_secret"})


@pytest.mark.anyio
async def test_the_example_app_injects_into_valid_objects(kubeconfig: Path, tmp_path: Path) -> None:
    text = (SOURCE / "example" / "orders.yaml").read_text()
    injected = inject_yaml(text, SETTINGS, NOW)
    docs = list(yaml.safe_load_all(injected))
    assert [d["kind"] for d in docs] == ["Namespace", "ConfigMap", "Deployment", "Service"]
    for doc in docs:
        as_model(doc)
    spec = docs[2]["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["sofamesh-init", "sofamesh-proxy"]
    (tmp_path / "orders.yaml").write_text(injected)
    code, out = await kubectl_create(kubeconfig, tmp_path / "orders.yaml")
    assert code == 0, out
