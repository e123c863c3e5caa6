"""`sofamesh inject`: workloads of several shapes in, meshed ones out, valid and injected once."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from tests.deploy.workloads import (
    NOW,
    SETTINGS,
    as_model,
    container,
    cronjob,
    deployment,
    frozen,
    pod,
    pod_spec,
    rich_spec,
    statefulset,
)

from sofamesh.deploy.inject import inject
from sofamesh.deploy.manifests import inject_yaml
from sofamesh.deploy.settings import ANNOTATIONS, STATUS, InjectError
from sofamesh.deploy.template import INIT, SIDECAR
from sofamesh.intercept.init import parser as init_parser

SHAPES = {
    "deployment": deployment(),
    "deployment-rich": deployment(rich_spec()),
    "statefulset": statefulset(),
    "statefulset-rich": statefulset(rich_spec()),
    "pod": pod(),
    "pod-rich": pod(rich_spec()),
    "cronjob": cronjob(),
    "daemonset": {**deployment(), "kind": "DaemonSet"},
    "job": {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "migrate"},
        "spec": cronjob()["spec"]["jobTemplate"]["spec"],
    },
}
SHAPES["daemonset"]["spec"] = {k: v for k, v in deployment()["spec"].items() if k != "replicas"}


def pod_of(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "Pod":
        return obj
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    return obj["spec"]["template"]


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_shape_gets_the_sidecar_and_stays_a_valid_object(name: str) -> None:
    before = frozen(SHAPES[name])
    after = inject(SHAPES[name], SETTINGS, NOW)
    assert SHAPES[name] == before, "the argument is not touched"
    as_model(after)
    old, new = pod_of(before)["spec"], pod_of(after)["spec"]
    assert new["containers"] == old["containers"]  # the app's containers as they were
    inits = new["initContainers"]
    assert [c["name"] for c in inits] == [INIT, SIDECAR] + [
        c["name"] for c in old.get("initContainers", [])
    ]
    assert [v["name"] for v in new["volumes"]][: len(old.get("volumes", []))] == [
        v["name"] for v in old.get("volumes", [])
    ]
    status = json.loads(pod_of(after)["metadata"]["annotations"][STATUS])
    assert status["initContainers"] == [INIT, SIDECAR]


def test_the_sidecar_is_native_held_until_ready_and_reports_its_pod() -> None:
    proxy = pod_of(inject(deployment(), SETTINGS, NOW))["spec"]["initContainers"][1]
    assert proxy["restartPolicy"] == "Always"
    assert proxy["image"] == "registry.example/sofamesh:test"
    probe = proxy["startupProbe"]["exec"]["command"]
    assert probe[:3] == ["python", "-I", "-S"]
    assert probe[-1] == "15000"
    assert proxy["readinessProbe"]["exec"]["command"] == probe
    assert proxy["securityContext"]["runAsUser"] == 1337
    assert proxy["securityContext"]["runAsNonRoot"] is True
    env = env_of(proxy)
    assert env["SOFAMESH_INJECTED_AT"] == "2026-05-04T12:30:00Z"
    assert env["SOFAMESH_APP"] == "orders"
    fields = {k: v["fieldRef"]["fieldPath"] for k, v in env.items() if isinstance(v, dict)}
    assert fields == {
        "POD_NAME": "metadata.name",
        "POD_NAMESPACE": "metadata.namespace",
        "NODE_NAME": "spec.nodeName",
        "POD_IP": "status.podIP",
        "SERVICE_ACCOUNT": "spec.serviceAccountName",
    }


def test_the_init_container_redirects_the_declared_ports_with_net_admin_only() -> None:
    spec = pod_spec(container("app", 8080), container("metrics", 9100))
    init = pod_of(inject(deployment(spec), SETTINGS, NOW))["spec"]["initContainers"][0]
    assert init["command"] == ["sofamesh-init"]
    args = init["args"]
    assert args[args.index("--inbound-ports") + 1] == "8080,9100"
    assert args[args.index("--proxy-uid") + 1] == "1337"
    assert "--dns-port" not in args
    caps = init["securityContext"]["capabilities"]
    assert caps == {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]}
    assert init["securityContext"]["privileged"] is False
    parsed = init_parser().parse_args(args)  # the init command itself takes these flags
    assert (parsed.outbound_port, parsed.inbound_port) == (15001, 15006)


def test_annotations_change_one_pod() -> None:
    obj = deployment(
        None,
        **{
            "sofamesh.io/image": "mine:2",
            "sofamesh.io/exclude-outbound-cidrs": "10.0.0.0/8, 169.254.169.254/32",
            "sofamesh.io/dns": "true",
            "sofamesh.io/identity-secret": "orders-identity",
            "sofamesh.io/control-token-secret": "shop-token",
            "sofamesh.io/app": "orders-v2",
        },
    )
    spec = pod_of(inject(obj, SETTINGS, NOW))["spec"]
    as_model(inject(obj, SETTINGS, NOW))
    init, proxy = spec["initContainers"][:2]
    assert init["image"] == proxy["image"] == "mine:2"
    assert init["args"][init["args"].index("--exclude-outbound-cidrs") + 1] == (
        "10.0.0.0/8,169.254.169.254/32"
    )
    assert init["args"][-3:] == ["--dns", "--dns-port", "15053"]
    assert {"name": "sofamesh-identity", "secret": {"secretName": "orders-identity"}} in spec[
        "volumes"
    ]
    env = env_of(proxy)
    assert env["SOFAMESH_APP"] == "orders-v2"
    assert env["SOFAMESH_CONTROL_TOKEN"] == {"secretKeyRef": {"name": "shop-token", "key": "token"}}


def test_without_interception_there_is_no_init_container() -> None:
    obj = pod(None, **{"sofamesh.io/interception": "none"})
    spec = inject(obj, SETTINGS, NOW)["spec"]
    assert [c["name"] for c in spec["initContainers"]] == [SIDECAR]


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        ("sofamesh.io/inject", "maybe"),
        ("sofamesh.io/interception", "ebpf"),
        ("sofamesh.io/exclude-outbound-ports", "80,http"),
        ("sofamesh.io/exclude-outbound-cidrs", "10.0.0.0/33"),
        ("sofamesh.io/proxy-memory", "lots"),
        ("sofamesh.io/config-map", "Not_A_Name"),
    ],
)
def test_a_bad_annotation_is_refused_by_name(annotation: str, value: str) -> None:
    with pytest.raises(InjectError, match=annotation):
        inject(deployment(None, **{annotation: value}), SETTINGS, NOW)


def test_opted_out_and_injected_objects_come_back_unchanged() -> None:
    out = deployment(None, **{"sofamesh.io/inject": "false"})
    assert inject(out, SETTINGS, NOW) is out
    for shape in SHAPES.values():
        once = inject(shape, SETTINGS, NOW)
        later = NOW.replace(year=2030)
        assert inject(once, SETTINGS, later) is once


def test_a_pod_using_the_injections_names_is_refused() -> None:
    spec = pod_spec(container(), volumes=[{"name": "sofamesh-config", "emptyDir": {}}])
    with pytest.raises(InjectError, match="sofamesh-config"):
        inject(pod(spec), SETTINGS, NOW)


def test_a_workload_without_containers_is_refused() -> None:
    broken = deployment()
    del broken["spec"]["template"]["spec"]["containers"]
    with pytest.raises(InjectError, match="Deployment orders"):
        inject(broken, SETTINGS, NOW)


def test_a_stream_keeps_its_order_and_other_kinds() -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "orders"}}
    listed = {"apiVersion": "v1", "kind": "List", "items": [pod()]}
    text = yaml.safe_dump_all([service, deployment(), None, listed, cronjob()])
    docs = list(yaml.safe_load_all(inject_yaml(text, SETTINGS, NOW)))
    assert [d["kind"] for d in docs] == ["Service", "Deployment", "List", "CronJob"]
    assert docs[0] == service
    assert docs[1] == inject(deployment(), SETTINGS, NOW)
    assert docs[2]["items"] == [inject(pod(), SETTINGS, NOW)]
    assert inject_yaml(inject_yaml(text, SETTINGS, NOW), SETTINGS, NOW) == inject_yaml(
        text, SETTINGS, NOW
    )


def test_bad_yaml_is_a_clear_error() -> None:
    with pytest.raises(InjectError, match="not YAML"):
        inject_yaml("kind: [", SETTINGS, NOW)


@pytest.mark.anyio
async def test_the_command_reads_stdin_and_writes_a_file(tmp_path: Path) -> None:
    out = tmp_path / "out.yaml"
    argv = [sys.executable, "-m", "sofamesh.cli", "inject", "-f", "-", "-o", str(out)]
    argv += ["--image", "img:1"]
    proc = await anyio.run_process(argv, input=yaml.safe_dump(deployment()).encode())
    assert proc.returncode == 0
    (doc,) = yaml.safe_load_all(out.read_text())
    assert pod_of(doc)["spec"]["initContainers"][1]["image"] == "img:1"
    as_model(doc)
    again = await anyio.run_process(
        [sys.executable, "-m", "sofamesh.cli", "inject", "-f", str(out)], check=False
    )
    assert list(yaml.safe_load_all(again.stdout)) == [doc]


@pytest.mark.anyio
async def test_the_command_names_a_bad_annotation_and_fails() -> None:
    bad = deployment(None, **{"sofamesh.io/dns": "yes"})
    argv = [sys.executable, "-m", "sofamesh.cli", "inject", "-f", "-"]
    proc = await anyio.run_process(argv, input=yaml.safe_dump(bad).encode(), check=False)
    assert proc.returncode == 1
    assert b"sofamesh.io/dns" in proc.stderr


def test_every_annotation_is_documented_and_every_documented_one_exists() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "deployment.md").read_text()
    table = set(re.findall(r"^\| `sofamesh\.io/([a-z-]+)` \|", docs, re.MULTILINE))
    assert table == set(ANNOTATIONS)
