"""`kubectl create --dry-run=client` accepts the injected manifests (see `kube_api`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from tests.deploy.kube_api import kubeconfig, kubectl_create
from tests.deploy.workloads import NOW, SETTINGS, cronjob, deployment, pod, rich_spec, statefulset

from sofamesh.deploy.manifests import inject_yaml

pytestmark = pytest.mark.anyio
__all__ = ["kubeconfig"]  # the fixture


async def test_kubectl_accepts_injected_manifests(kubeconfig: Path, tmp_path: Path) -> None:
    objects = [deployment(rich_spec()), statefulset(), pod(), cronjob()]
    manifest = tmp_path / "injected.yaml"
    manifest.write_text(inject_yaml(yaml.safe_dump_all(objects), SETTINGS, NOW))
    code, out = await kubectl_create(kubeconfig, manifest)
    assert code == 0, out
    assert out.split() == [
        "deployment.apps/orders",
        "statefulset.apps/ledger",
        "pod/orders-1",
        "cronjob.batch/nightly",
    ]


async def test_kubectl_refuses_a_kind_it_does_not_know(kubeconfig: Path, tmp_path: Path) -> None:
    # The check can fail: an unmapped kind is an error, not a silent pass.
    manifest = tmp_path / "odd.yaml"
    manifest.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Gadget", "metadata": {}}))
    code, out = await kubectl_create(kubeconfig, manifest)
    assert code != 0
    assert "Gadget" in out
